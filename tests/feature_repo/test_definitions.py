"""The declarative Feast repo: every family has its view, every served feature a home."""

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from feast import FeatureService, FeatureView
from feast.types import Float32, String

from features.families import FAMILIES
from features.store import REPO_DIR, bound_definitions, repo_definitions
from serving.schemas import FeatureRow

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = repo_definitions()
VIEWS = {obj.name: obj for obj in DEFINITIONS if isinstance(obj, FeatureView)}
SERVICES = {obj.name: obj for obj in DEFINITIONS if isinstance(obj, FeatureService)}


def test_every_family_has_one_view_declaring_exactly_its_features():
    by_family = {view.tags["family"]: view for view in VIEWS.values()}
    assert set(by_family) == set(FAMILIES)
    for name, family in FAMILIES.items():
        view = by_family[name]
        assert [f.name for f in view.features] == family.feature_names
        assert view.ttl == timedelta(days=14) and view.online
        assert view.tags["source_table"] == family.source and view.tags["owner"] == "custlab"
        for field, feature in zip(view.features, family.features, strict=True):
            assert field.description == feature.description != ""
            assert field.dtype == (Float32 if feature.kind == "number" else String)


@pytest.mark.parametrize("service", ["churn_v1", "propensity_v1", "clv_v1", "lifecycle_v1"])
def test_every_served_feature_is_declared_by_a_view(service):
    for projection in SERVICES[service].feature_view_projections:
        declared = {f.name for f in VIEWS[projection.name].schema}
        assert {f.name for f in projection.features} <= declared


def test_the_feature_route_takes_declared_features_only():
    declared = {f.name for view in VIEWS.values() for f in view.schema}
    assert set(FeatureRow.model_fields) == declared


def test_binding_paths_leaves_the_declared_definitions_unchanged(tmp_path):
    before = {name: view.batch_source.path for name, view in VIEWS.items()}
    bound = [o for o in bound_definitions(tmp_path) if isinstance(o, FeatureView)]
    assert {v.batch_source.path for v in bound} == {
        str(tmp_path.resolve() / f.table_file) for f in FAMILIES.values()
    }
    assert {name: view.batch_source.path for name, view in VIEWS.items()} == before
    assert all(not Path(path).is_absolute() for path in before.values())


def _imports(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return names


def test_features_never_import_the_repo():
    """One direction: the repo reads features/ for names; features/ opens the repo by path."""
    assert not {n for n in _imports(ROOT / "features") if n.split(".")[0] == "feature_repo"}
    assert REPO_DIR == ROOT / "feature_repo"
