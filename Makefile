# Two set-up commands (README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install everything on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# sar_atd_msgs (ROS 2 interfaces) built by colcon from the ROS 2 wheels into the venv prefix
MSGS := $(VENV)/.sar_atd_msgs
MSG_SRC := $(wildcard sar_atd_ws/src/sar_atd_msgs/msg/*.msg) \
	sar_atd_ws/src/sar_atd_msgs/CMakeLists.txt sar_atd_ws/src/sar_atd_msgs/package.xml

.PHONY: demo demo-offline test lint install bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

$(MSGS): $(STAMP) $(MSG_SRC) sar_atd_ws/src/sar_atd_ros/scripts/build_msgs.py
	$(BIN)/python sar_atd_ws/src/sar_atd_ros/scripts/build_msgs.py
	touch $(MSGS)

install: $(STAMP) $(MSGS)

# the streaming demo: demo bags -> ROS 2 node graph (separate processes over DDS) -> report
demo: $(STAMP) $(MSGS)
	$(BIN)/sar-atd stream-demo

# the offline pipeline demo: simulate -> clutter -> overlay -> real-patchwork evaluation
demo-offline: $(STAMP) $(MSGS)
	$(BIN)/sar-atd demo

test: $(STAMP) $(MSGS)
	$(BIN)/python -m pytest -q tests

# static checks (CI runs them before the tests): ruff on the whole tree, mypy on the core
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy sar_atd_ws/src/sar_atd/sar_atd

bench: $(STAMP) $(MSGS)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) build *.egg-info sar_atd_ws/build sar_atd_ws/log
