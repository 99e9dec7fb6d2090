"""Checkpoint locations: URL schemes, cache hits, missing files. Nothing is downloaded."""
import pytest

from maskrcnn_multi.checkpoint import CheckpointNotFoundError, cached_path_for_url, get_local_path, paths, to_url


def test_detectron2_scheme_maps_to_model_zoo_url():
    assert to_url("detectron2://ImageNetPretrained/MSRA/R-50.pkl") == (
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    )
    assert to_url("/data/model.pth") == "/data/model.pth"


def test_cache_path_and_cache_hit_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKRCNN_MULTI_CACHE", str(tmp_path))
    expected = tmp_path / "dl.fbaipublicfiles.com" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    url = to_url("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert cached_path_for_url(url) == str(expected)
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"cached")

    def no_network(*args, **kwargs):
        raise AssertionError("tests never download")

    monkeypatch.setattr(paths, "download", no_network)
    assert get_local_path("detectron2://ImageNetPretrained/MSRA/R-50.pkl") == str(expected)
    assert get_local_path(url) == str(expected)


def test_file_scheme_and_plain_paths(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert get_local_path(f"file://{weights}") == str(weights)
    assert get_local_path(str(weights)) == str(weights)


def test_missing_file_is_one_line_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(CheckpointNotFoundError) as info:
        get_local_path(str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_catalog_names_expand_to_detectrons_imagenet_files():
    from maskrcnn_multi.checkpoint.paths import to_url

    assert to_url("catalog://ImageNetPretrained/FAIR/X-152-32x8d-IN5k") == \
        "https://dl.fbaipublicfiles.com/detectron/ImageNetPretrained/25093814/X-152-32x8d-IN5k.pkl"
    assert to_url("catalog://ImageNetPretrained/MSRA/R-50").endswith("/detectron/ImageNetPretrained/MSRA/R-50.pkl")
    with pytest.raises(CheckpointNotFoundError, match=r"'catalog://ImageNetPretrained/FAIR/X-999': not in detectron2's catalog \(known: "):
        to_url("catalog://ImageNetPretrained/FAIR/X-999")
