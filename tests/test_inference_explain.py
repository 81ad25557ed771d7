"""Inference and saliency on the shipped demo model: scores, volumes, the fast paths against
tf-keras-vis, and the two validity checks (pointing game, model randomisation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from medui.ai.registry import list_models
from medui.series import Series
from medui.synthetic.phantoms import make_phantom
from medui.usecases.diagnose import load_model

POINTING_SEED = 300_000  # held out: training 0.., validation 100000.., test 200000..


@pytest.fixture(scope="module")
def demo():
    entries = [e for e in list_models() if e.card.demo]
    assert entries, "the demo model must ship in models/ (python -m medui demo-model --out models)"
    return load_model(entries[0].id)


def _series(image: np.ndarray, modality: str = "DX", n: int = 1) -> Series:
    px = np.repeat(image.astype(np.float32)[None], n, axis=0)
    return Series(pixels=px, affine=np.eye(4), modality=modality, body_part="CHEST")


def test_scores_separate_lesions_and_follow_the_card(demo):
    entry, predictor, _ = demo
    pos = [predictor.predict(_series(make_phantom(POINTING_SEED + k, lesion=True).image)) for k in range(10)]
    neg = [predictor.predict(_series(make_phantom(POINTING_SEED + 50 + k, lesion=False).image)) for k in range(10)]
    p_pos = [r.probabilities["lesion"] for r in pos]
    p_neg = [r.probabilities["lesion"] for r in neg]
    assert np.mean(p_pos) > np.mean(p_neg) + 0.3
    for r in pos + neg:
        assert abs(sum(r.probabilities.values()) - 1) < 1e-6
        assert r.threshold == entry.card.threshold
        assert r.label == ("lesion" if r.probabilities["lesion"] >= r.threshold else "normal")
        assert r.margin == pytest.approx(r.probabilities["lesion"] - r.threshold, abs=1e-5)


def test_volume_gives_slice_scores_and_max_study_score(demo):
    _, predictor, _ = demo
    slices = [make_phantom(POINTING_SEED + 200 + k, lesion=(k == 2)).image for k in range(4)]
    series = Series(pixels=np.stack(slices).astype(np.float32), affine=np.eye(4), modality="CT", body_part="CHEST")
    pred = predictor.predict(series)
    assert len(pred.slice_scores) == 4 and pred.peak_slice == int(np.argmax(pred.slice_scores))
    assert pred.probabilities["lesion"] == pytest.approx(max(pred.slice_scores), abs=1e-5)
    assert any("made for" in w and "CT" in w for w in pred.warnings)  # modality not in the card


def test_fast_gradcam_matches_tf_keras_vis(demo):
    _, predictor, explainer = demo
    x = np.stack([predictor.prepare(_series(make_phantom(POINTING_SEED + k, lesion=True).image))[0][0]
                  for k in range(3)])
    for cls in (1, 0):
        fast = explainer.gradcam(x, cls, centered=False)
        ref = explainer.reference("gradcam", x, cls)
        assert fast.shape == ref.shape == (3, 128, 128)
        np.testing.assert_allclose(fast, ref, atol=2e-4)


def test_fast_smoothgrad_agrees_with_tf_keras_vis(demo):
    _, predictor, explainer = demo
    x = predictor.prepare(_series(make_phantom(POINTING_SEED + 1, lesion=True).image))[0]
    fast = explainer.smoothgrad(x, 1, samples=1, noise=0.0)  # no noise: exactly the vanilla gradient
    from tf_keras_vis.saliency import Saliency

    ref = np.asarray(Saliency(explainer.logit_model, clone=False)(explainer.score_fn(1), x))
    np.testing.assert_allclose(fast, ref, atol=1e-5)
    noisy = explainer.smoothgrad(x, 1)
    reference = explainer.reference("smoothgrad", x, 1)
    assert noisy.shape == (1, 128, 128) and spearmanr(noisy.ravel(), reference.ravel())[0] > 0.6


def test_every_method_gives_a_map_that_depends_on_the_model(demo):
    _, predictor, explainer = demo
    x = predictor.prepare(_series(make_phantom(POINTING_SEED + 3, lesion=True).image))[0]
    for method in ("gradcam", "gradcam++", "scorecam", "layercam", "smoothgrad"):
        m = explainer.explain(method, x, 1)
        assert m.shape == (1, 128, 128) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 + 1e-6
        assert m.std() > 0.01, method  # not a flat map
    # Score-CAM on a one-unit head: tf-keras-vis softmaxes the single logit, so every weight would be 1.
    # Ours scores the two logits [0, z], whose softmax is exactly the sigmoid probability.
    import keras

    two, score = explainer._scorecam_model(1)
    soft = np.asarray(keras.ops.softmax(two(x)))
    prob = 1 / (1 + np.exp(-np.asarray(explainer.logit_model(x))[:, 0]))
    np.testing.assert_allclose(soft[:, 1], prob, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(score(keras.ops.softmax(two(x)))), prob, rtol=1e-5)


def _lesion_inputs(predictor, n: int):
    phantoms = [make_phantom(POINTING_SEED + 1000 + k, lesion=True) for k in range(n)]
    x, geoms = [], []
    for p in phantoms:
        a, g = predictor.prepare(_series(p.image))
        x.append(a[0])
        geoms.append(g[0])
    return phantoms, np.stack(x), geoms


def test_pointing_game_on_200_held_out_lesions(demo):
    from medui.ai.preprocess import to_original

    _, predictor, explainer = demo
    phantoms, x, geoms = _lesion_inputs(predictor, 200)
    hits = 0
    for k in range(0, 200, 25):
        cams = explainer.gradcam(x[k:k + 25], 1)
        for j, cam in enumerate(cams):
            native = to_original(cam, geoms[k + j])
            r, c = np.unravel_index(int(np.argmax(native)), native.shape)
            hits += bool(phantoms[k + j].mask[r, c])
    assert hits / 200 >= 0.90, f"pointing game {hits}/200"


def test_model_randomisation_changes_the_maps(demo):
    import keras

    from medui.ai.saliency import Explainer

    entry, predictor, explainer = demo
    _, x, _ = _lesion_inputs(predictor, 20)
    random_model = keras.models.clone_model(explainer.model)  # same graph, fresh random weights
    random_explainer = Explainer(random_model, entry.card.cam_layer)
    trained = explainer.gradcam(x, 1)
    randomised = random_explainer.gradcam(x, 1)
    # a constant map (all activations dead) has no rank correlation with anything: count it as 0
    rho = np.mean([np.nan_to_num(spearmanr(a.ravel(), b.ravel())[0]) for a, b in zip(trained, randomised, strict=True)])
    assert rho < 0.5, f"Spearman {rho:.2f}: maps barely depend on the weights"
