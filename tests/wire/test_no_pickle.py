"""No code path in the package may unpickle, unmarshal or eval bytes (CVE-2026-25874).

Scans the syntax tree of every module in src/chunkwise (docstrings that merely mention
pickle are fine; imports and calls are not).
"""

import ast
from pathlib import Path

import chunkwise

PACKAGE = Path(chunkwise.__file__).parent
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "dill", "cloudpickle", "shelve", "joblib", "jsonpickle"}
BANNED_CALLS = {"eval", "exec", "__import__"}


def offences_in(source: str, name: str = "<src>") -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            out += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            out.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in BANNED_CALLS:
                out.append(f"{where}: {f.id}()")
            kw = {k.arg: k.value for k in node.keywords}
            if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
                out.append(f"{where}: allow_pickle")
            if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) and f.value.id == "torch":
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    out.append(f"{where}: torch.load without weights_only=True")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in BANNED_MODULES:
            out.append(f"{where}: {node.value.id}.{node.attr}")
    return out


def test_package_has_no_unsafe_deserialization():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    offences = [o for f in files for o in offences_in(f.read_text(), str(f.relative_to(PACKAGE)))]
    assert not offences, "unsafe deserialization in src/chunkwise:\n" + "\n".join(offences)


def test_scanner_catches_offences():
    bad = (
        '"""mentions pickle harmlessly"""\n'
        "import pickle\nfrom marshal import loads\nx = eval('1')\nmodel.eval()\n"
        "torch.load(p)\ntorch.load(p, weights_only=True)\nnp.load(p, allow_pickle=True)\n"
    )
    found = offences_in(bad)
    assert sorted(o.split(": ", 1)[1] for o in found) == sorted([
        "import pickle", "from marshal import ...", "eval()", "torch.load without weights_only=True", "allow_pickle",
    ]), found
