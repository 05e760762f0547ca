"""The package's shape: no import cycles, a cheap import, a CLI that answers
without TensorFlow, and layers registered for loading in a fresh process."""

import ast
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np

import aefs_keras as ak

PACKAGE = pathlib.Path(ak.__file__).resolve().parent


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """aefs_keras module -> the aefs_keras modules it imports, counting
    imports inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for a in node.names:
                    full = f"{base}.{a.name}"
                    edges.add(full if full in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_among_package_modules():
    graph = import_graph()
    assert "aefs_keras.datasets.readers" in graph and len(graph) > 40
    assert "aefs_keras.datasets.preprocess" in graph["aefs_keras.datasets.loader"]  # edges are seen
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_import_and_cli_help_need_no_tensorflow():
    proc = _run("""
        import sys
        import aefs_keras
        from aefs_keras import AEFS, Schema, cli
        AEFS(k=2)
        try:
            cli.main(["--help"])
        except SystemExit:
            pass
        print("loaded:", sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "usage: aefs-keras" in proc.stdout and "loaded: []" in proc.stdout
    assert proc.stderr == ""  # no TensorFlow banner


def test_every_registering_module_is_imported_for_loading():
    registering = {_module_name(p) for p in PACKAGE.rglob("*.py") if "register_keras_serializable" in p.read_text()}
    covered = {f"aefs_keras.{m}" for m in ak._SERIALIZABLE}
    assert registering and all(any(r == c or r.startswith(c + ".") for c in covered) for r in registering), \
        sorted(registering)


def test_layers_load_in_a_fresh_process_after_a_plain_import(tmp_path):
    schema = ak.Schema([ak.Categorical(f"c{i}", vocabulary_size=10) for i in range(4)])
    model = ak.build_model(schema, "dnn", ak.experimental.ResearchAEFS(k=2, exploration=0.5),
                           hidden_units=[4], d_main=4)
    ak.default_compile(model, optimizer=ak.optimizers.SparseAdam(1e-3))  # saved with the model
    path = tmp_path / "m.keras"
    model.save(path)
    x = {f"c{i}": np.arange(3) + i for i in range(4)}
    expected = model.predict(x, verbose=0)
    np.save(tmp_path / "expected.npy", expected)
    proc = _run(f"""
        import numpy as np
        import aefs_keras  # registers the layers once Keras is imported
        import keras
        model = keras.models.load_model({str(path)!r})
        x = {{f"c{{i}}": np.arange(3) + i for i in range(4)}}
        np.testing.assert_array_equal(model.predict(x, verbose=0), np.load({str(tmp_path / 'expected.npy')!r}))
        print(type(model.get_layer("selector")).__name__)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ExploringSelector")
    assert isinstance(keras.models.load_model(path).get_layer("selector"), ak.experimental.ExploringSelector)


def test_no_submodule_shares_a_name_with_an_exported_function():
    # Importing such a submodule replaces the package attribute with the
    # module (seen with `export` and `history_data`).
    import pathlib

    import aefs_keras
    import aefs_keras.datasets

    for package in (aefs_keras, aefs_keras.datasets):
        modules = {p.stem for p in pathlib.Path(package.__file__).parent.glob("*.py")}
        assert not modules & set(package._EXPORTS), modules & set(package._EXPORTS)
