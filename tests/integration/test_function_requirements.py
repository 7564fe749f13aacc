"""A function's `requirements`: installed by the real pip, once per distinct list, from a wheel
this test builds (PIP_NO_INDEX + PIP_FIND_LINKS: nothing is fetched from anywhere)."""
from __future__ import annotations

import json
import sys
import zipfile

from sendo.functions.invoker import from_env, install_requirements


def make_wheel(directory) -> None:
    name, files = "fnreqdemo", {"fnreqdemo/__init__.py": "VALUE = 42\n",
                                "fnreqdemo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: fnreqdemo\nVersion: 1.0\n",
                                "fnreqdemo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                                                 "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{p},,\n" for p in files) + "fnreqdemo-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(directory / f"{name}-1.0-py3-none-any.whl", "w") as z:
        for p, text in {**files, "fnreqdemo-1.0.dist-info/RECORD": record}.items():
            z.writestr(p, text)


def test_requirements_are_installed_once_and_importable(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    cache = tmp_path / "cache"
    path, built = install_requirements(["fnreqdemo==1.0"], str(cache))
    assert built and (cache / path.rsplit("/", 1)[-1] / "fnreqdemo" / "__init__.py").exists()
    assert install_requirements([" fnreqdemo==1.0 "], str(cache)) == (path, False)  # cached, same list
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]

    before = list(sys.path)
    try:
        inv = from_env({"FUNCTION_SOURCE": "import fnreqdemo\ndef handle(e, c):\n    return fnreqdemo.VALUE\n",
                        "FUNCTION_HANDLER": "main.handle", "FUNCTION_CACHE_DIR": str(cache),
                        "FUNCTION_REQUIREMENTS": json.dumps(["fnreqdemo==1.0"])})
        assert inv.fn({}, None) == 42
    finally:
        sys.path[:] = before
        sys.modules.pop("fnreqdemo", None)
        sys.modules.pop("main", None)
