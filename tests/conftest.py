"""Session fixtures shared by every test folder; each fixture module has one owner:

- tests/fixtures/data.py    `tiny_dataset`: a synthetic dynamic scene on disk (featvid synth)
- tests/fixtures/train.py   `tiny_run`: that scene trained once with the smallest preset
- tests/fixtures/stream.py  `tiny_stream`, `web_stream`: that run baked and encoded
"""
pytest_plugins = ["tests.fixtures.data", "tests.fixtures.train", "tests.fixtures.stream"]
