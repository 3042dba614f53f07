# Two entry points: `make demo` and `make test`. Both build .venv when it is missing and are
# idempotent: a second run reinstalls nothing unless pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.featvid-installed
TORCH  ?= torch==2.13.0

.PHONY: demo test browser bench bench-quick clean

demo: $(STAMP)
	$(VENV)/bin/featvid demo

test: $(STAMP) browser
	$(PY) -m pytest -q

# The full benchmark matrix (minutes); `bench-quick` is the reduced one.
bench: $(STAMP)
	$(PY) benchmarks/codec_presets.py

bench-quick: $(STAMP)
	$(PY) benchmarks/codec_presets.py --quick

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, and only when none is importable: a user's CUDA build stays, and nothing below
# can pull the multi-GB CUDA wheel by asking for an unpinned torch: the extras (dev: the tests'
# packages, bench, web and ray for `featvid batch --executor ray`) install with the torch that is
# there pinned.
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]" "torch==$$($(PY) -c 'import torch; print(torch.__version__)')"
	@touch $(STAMP)

# The web player test needs a Chromium. Debian's package is installed when we are root on a
# machine with apt; anywhere else the browser tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    echo "installing Debian's chromium for the web player test" && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; } ; } || \
	  echo "chromium not installed: the browser tests will skip"

clean:
	rm -rf $(VENV) demo *.egg-info
