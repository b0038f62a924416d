"""Lag of any Kafka-fed Flink job from standard metrics: what ``flink/probe.py`` adds for a KafkaSource.

* ``backlog`` (records) = Flink's standard source gauge ``pendingRecords`` (FLIP-33; the KafkaSource's
  records between each split's current offset and the log end), summed over the source's subtasks. Only
  where it is missing (older connectors): the Kafka consumer's ``records-lag-max`` summed over subtasks (each
  subtask's worst partition: a lower bound of the backlog).
* ``lag_ms`` for a job without its own ``eventTimeLagMs`` gauge = ``backlog / rate * 1000``: the records
  behind, in ms of input. ``rate`` = the arrival rate into the topic when the caller knows it (a replay's
  schedule), else the probe's ``rate_in`` (records/s the sources read). In steady state both are the arrival
  rate and lag_ms is the age of the oldest unread record; while catching up, ``rate_in`` is the read rate and
  lag_ms is the time to drain the backlog at that rate (shorter than the age). 0 when nothing is pending;
  None when the rate is unknown or 0 with records pending (a stalled or restarting job: no estimate).

Metric names are found the way the probe finds the others: by suffix on a vertex's metric names
(``Source__Kafka_Source.pendingRecords``, ``Source__Kafka.KafkaSourceReader.KafkaConsumer.records-lag-max``).
"""

from __future__ import annotations

# (metric suffix, probe field, aggregation over subtasks), as flink/probe.py's _GAUGES
PENDING = (".pendingRecords", "backlog", "sum")
RECORDS_LAG_MAX = (".records-lag-max", "backlog", "sum")
LAG_GAUGE_FIELD = "lag_ms"  # the probe field of a job's own event-time lag gauge (.eventTimeLagMs)


def source_metrics(names: list[str], found: list[tuple[str, str, str]] | None = None) -> list[tuple[str, str, str]]:
    """The Kafka source metrics of one vertex to sample, as the probe's ``(metric, field, agg)`` triples, from
    the vertex's metric names; none when the vertex has no Kafka source or ``found`` already has a backlog."""
    if any(f == "backlog" for _, f, _ in found or []):
        return []
    for suffix, field, agg in (PENDING, RECORDS_LAG_MAX):
        hits = sorted(n for n in names if n.endswith(suffix))
        if hits:
            return [(hits[0], field, agg)]
    return []


def lag_ms(backlog: float | None, rate: float | None) -> float | None:
    """Estimated lag in ms: ``backlog / rate * 1000`` (see the module doc); None when it cannot be estimated."""
    if backlog is None:
        return None
    if backlog <= 0:
        return 0.0
    if rate is None or rate <= 0:
        return None
    return backlog / rate * 1000.0


def fill_lag(sample, has_lag_gauge: bool, arrival_rate: float | None = None) -> None:
    """Set ``sample.lag_ms`` from its backlog and rate when the job has no lag gauge of its own (a probe
    Sample, after its ``rate_in`` is computed); a job's own gauge is never overwritten."""
    if has_lag_gauge or sample.lag_ms is not None:
        return
    sample.lag_ms = lag_ms(sample.backlog, arrival_rate if arrival_rate else sample.rate_in)
