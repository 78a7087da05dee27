from dynamicvit.docsgen.imports import imported_modules


def test_every_way_of_importing_a_module_counts(tmp_path):
    """A missed form would hide an upward import from the layering tests and the architecture diagram."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__.py", "mod.py", "sub/__init__.py", "sub/leaf.py"):
        (pkg / name).write_text("")
    (pkg / "user.py").write_text(
        "import os\n"
        "import pkg.mod\n"
        "from pkg import sub, helper_function\n"
        "from pkg.sub.leaf import thing\n"
        "def later():\n"
        "    import importlib\n"
        "    return importlib.import_module('pkg.sub.leaf'), 'other.module', 'pkg is a word'\n"
    )
    found = imported_modules(pkg / "user.py", pkg)
    assert found == {"pkg.mod", "pkg.sub", "pkg", "pkg.sub.leaf"}
