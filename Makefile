# Khaos: two commands do all the set-up on a fresh Debian machine, as root:
#   make demo   - the whole loop on the embedded local lab: profile, fit, the daemon changing a live job
#   make test   - install what is needed and run the whole suite
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
KHAOS := $(VENV)/bin/khaos
# The Flink version, in one place: the distribution (khaos dist) and the jobs (-Dflink.version) follow it.
FLINK_VERSION ?= 2.3.0
# The Kafka broker (khaos dist kafka: Maven Central jars of jobs/kafka-dist/pom.xml; roles/kafka installs it).
KAFKA_VERSION ?= 4.4.0
# The checkpoint store (khaos dist s3proxy: Maven Central jars of jobs/s3proxy-dist/pom.xml; roles/checkpoint_store
# installs it) and Flink's S3 filesystem plugin of FLINK_VERSION (khaos dist flink-s3; roles/flink installs it).
S3PROXY_VERSION ?= 2.6.0
JOB_JAR := build/jobs/iot-vehicles.jar
JOB_JARS := $(JOB_JAR) build/jobs/ysb.jar build/jobs/plain-kafka.jar
JOB_SRC := $(shell find jobs tests/support/jobs -path jobs/kafka-dist -prune -o -path jobs/s3proxy-dist -prune -o -path '*/target' -prune -o \( -name '*.java' -o -name pom.xml \) -print 2>/dev/null)
MVN := mvn -q -B
DEBS := openssh-server openssh-client tini iproute2 openjdk-17-jdk-headless maven procps python3 python3-venv util-linux systemd

.PHONY: help deps venv debs dist kafka-dist store-dist job lint test test-unit demo bench clean
help:
	@echo "make demo   the whole loop on the local lab: profile, fit, daemon changing a live job (root)"
	@echo "make test   install everything needed and run lint + the whole test suite (root)"
	@echo "make bench  run every benchmark under bench/ (root, about two hours)"

deps: debs venv

debs:
	@dpkg -s $(DEBS) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null; }

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# Flink distribution in the official layout, built offline from the PyPI wheels (cached in ~/.cache/khaos).
dist: venv
	$(KHAOS) dist --version $(FLINK_VERSION)

# Kafka (KRaft) broker tarball, resolved with Maven from Maven Central (cached in ~/.cache/khaos).
kafka-dist: venv | debs
	$(KHAOS) dist kafka --version $(KAFKA_VERSION)

# The checkpoint store's tarball and Flink's S3 plugin jar, from Maven Central (cached in ~/.cache/khaos).
store-dist: venv | debs
	$(KHAOS) dist s3proxy --version $(S3PROXY_VERSION)
	$(KHAOS) dist flink-s3 --version $(FLINK_VERSION)

# The jobs, built with Maven from jobs/pom.xml (Flink provided, the Kafka connector shaded in; the
# Flink version is the pom's flink.version): iot-vehicles, ysb and tests/support/jobs/plain-kafka.
job: $(JOB_JARS)
$(JOB_JARS) &: $(JOB_SRC) | debs
	$(MVN) -f jobs/pom.xml -Dflink.version=$(FLINK_VERSION) clean package
	mkdir -p build/jobs
	cp jobs/iot-vehicles/target/iot-vehicles.jar build/jobs/iot-vehicles.jar
	cp jobs/ysb/target/ysb.jar build/jobs/ysb.jar
	cp tests/support/jobs/plain-kafka/target/plain-kafka.jar build/jobs/plain-kafka.jar

# Python: ruff lint + format check (ruff.toml); Ansible: ansible-lint's production profile.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ansible-lint --offline --profile production playbooks roles

test-unit: venv
	$(PY) -m pytest -q tests/unit

test: deps dist kafka-dist store-dist job lint
	$(PY) tests/lanes.py -q --durations=8

demo: deps dist kafka-dist store-dist job
	$(KHAOS) demo

# Every benchmark under bench/ (root; about two hours here): lab start-up, the daemon's footprint and
# reconfiguration gap, paced interval changes, Kafka replay throughput, a 30-failure profile, the
# default evaluation, the 30-minute daemon soak.
bench: deps dist kafka-dist store-dist job
	$(PY) bench/lab_startup.py
	$(PY) bench/controller.py
	$(PY) bench/pace.py
	$(PY) bench/replay.py
	$(PY) bench/profile.py
	$(PY) bench/evaluate.py
	$(PY) bench/daemon_soak.py

clean:
	rm -rf build
