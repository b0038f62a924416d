package io.khaos.jobs;

import org.apache.flink.runtime.checkpoint.CheckpointOptions;
import org.apache.flink.runtime.state.CheckpointStreamFactory;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.operators.OperatorSnapshotFutures;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * Test knob {@code --savepoint-sleep-ms MS}: a pass-through operator whose snapshot sleeps MS when it
 * is a savepoint (so a stop-with-savepoint takes that long); checkpoints are not slowed. The job only
 * has this operator when the flag is given.
 */
final class SavepointSleep extends AbstractStreamOperator<Long> implements OneInputStreamOperator<Long, Long> {
    private static final long serialVersionUID = 1L;
    private final long sleepMs;

    SavepointSleep(long sleepMs) {
        this.sleepMs = sleepMs;
    }

    @Override
    public void processElement(StreamRecord<Long> element) {
        output.collect(element);
    }

    @Override
    public OperatorSnapshotFutures snapshotState(long checkpointId, long timestamp, CheckpointOptions options,
                                                 CheckpointStreamFactory factory) throws Exception {
        if (options.getCheckpointType().isSavepoint()) {
            Thread.sleep(sleepMs);
        }
        return super.snapshotState(checkpointId, timestamp, options, factory);
    }
}
