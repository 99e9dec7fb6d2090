"""Catalogs: registration by name, clear errors, metadata that cannot silently change."""
import pytest

from maskrcnn_multi.data import DatasetCatalog, MetadataCatalog, UnknownDatasetError, datasets_root


def test_register_and_get(temporary_dataset_names):
    temporary_dataset_names.append("unit_catalog")
    DatasetCatalog.register("unit_catalog", lambda: [{"file_name": "x.jpg"}])
    assert DatasetCatalog.get("unit_catalog") == [{"file_name": "x.jpg"}]
    assert "unit_catalog" in DatasetCatalog.list()
    with pytest.raises(KeyError, match="'unit_catalog' is already registered"):
        DatasetCatalog.register("unit_catalog", list)


def test_unknown_dataset_lists_the_registered_ones():
    with pytest.raises(KeyError, match="dataset 'nope' is not registered"):
        DatasetCatalog.get("nope")
    with pytest.raises(UnknownDatasetError, match=r"registered: .*shapes_train"):  # a user error too
        DatasetCatalog.get("nope")


def test_metadata_fields_are_set_once(temporary_dataset_names):
    temporary_dataset_names.append("unit_metadata")
    metadata = MetadataCatalog.get("unit_metadata").set(thing_classes=["a"])
    assert MetadataCatalog.get("unit_metadata").thing_classes == ["a"]
    metadata.set(thing_classes=["a"])  # same value: fine
    with pytest.raises(ValueError, match="'thing_classes' of dataset 'unit_metadata' is already"):
        metadata.thing_classes = ["b"]
    with pytest.raises(AttributeError, match="has no field 'json_file'"):
        metadata.json_file
    assert metadata.get("json_file") is None


def test_datasets_root_follows_the_environment(monkeypatch):
    monkeypatch.delenv("MASKRCNN_MULTI_DATASETS", raising=False)
    assert datasets_root() == "datasets"
    monkeypatch.setenv("MASKRCNN_MULTI_DATASETS", "/data/sets")
    assert datasets_root() == "/data/sets"
