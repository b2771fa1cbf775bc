import numpy as np

from cctrack.embed import embed_tracklets, load_embedder, tracklet_descriptors
from cctrack.histogram import ColourHistogramEmbedder


def _person(shirt_bgr, trousers_bgr, rng):
    crop = np.zeros((120, 50, 3), np.uint8)
    crop[:60] = shirt_bgr
    crop[60:] = trousers_bgr
    return np.clip(crop + rng.normal(0, 4, crop.shape), 0, 255).astype(np.uint8)


def test_colour_histogram_separates_outfits_and_nothing_else():
    rng = np.random.default_rng(0)
    red_blue = [_person((30, 30, 200), (200, 40, 40), rng) for _ in range(2)]
    green_grey = _person((40, 180, 40), (128, 128, 128), rng)
    embedder = load_embedder(None, descriptor="colour_histogram")
    assert isinstance(embedder, ColourHistogramEmbedder)
    vectors = embedder.embed(red_blue + [green_grey])
    assert vectors.shape == (3, embedder.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.9
    assert vectors[0] @ vectors[2] < 0.3


def test_tracklet_descriptor_is_the_normalised_mean_of_its_crops():
    embeddings = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0.6, 0.8]], np.float32)
    offsets = np.array([0, 2, 5])
    descriptors = tracklet_descriptors(embeddings, offsets)
    assert np.allclose(descriptors[0], [np.sqrt(0.5), np.sqrt(0.5)])
    expected = np.array([2.6, 0.8]) / np.linalg.norm([2.6, 0.8])
    assert np.allclose(descriptors[1], expected, atol=1e-6)


def test_embed_tracklets_keeps_per_crop_embeddings_and_a_model_identity():
    rng = np.random.default_rng(1)
    crops = [[_person((30, 30, 200), (200, 40, 40), rng)] * 3, [_person((40, 180, 40), (90, 90, 90), rng)]]
    result = embed_tracklets(crops, ColourHistogramEmbedder(), show_progress=False)
    assert result.crop_embeddings.shape == (4, ColourHistogramEmbedder.dim)
    assert result.crop_offsets.tolist() == [0, 3, 4]
    assert result.descriptors.shape == (2, ColourHistogramEmbedder.dim)
    assert len(result.model_sha256) == 64 and "colour histogram" in result.model
