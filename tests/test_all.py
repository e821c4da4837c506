from __future__ import annotations

import types

import aptrt


class TestExports:
    def test_all_names_exist(self) -> None:
        assert isinstance(aptrt.__all__, tuple)
        assert len(set(aptrt.__all__)) == len(aptrt.__all__)
        missing = [name for name in aptrt.__all__ if not hasattr(aptrt, name)]
        assert not missing

    def test_public_names_are_in_all(self) -> None:
        public = {
            name
            for name, value in vars(aptrt).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
        }
        assert public - set(aptrt.__all__) == set()
        assert set(aptrt.__all__) - public == set()

    def test_public_objects_live_in_aptrt(self) -> None:
        for name in aptrt.__all__:
            value = getattr(aptrt, name)
            module = getattr(value, "__module__", None)
            if module is not None and isinstance(value, (type, types.FunctionType)):
                assert module == "aptrt", name

    def test_version(self) -> None:
        assert isinstance(aptrt.__version__, str)
        assert aptrt.__version__
