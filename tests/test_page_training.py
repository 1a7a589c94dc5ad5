"""The Training page through AppTest: a few steps on tiny synthetic scenes run in the background, the page
shows the curves, and the result becomes selectable as the session's weights in the sidebar."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_train_a_few_steps_and_use_the_model():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/training.py").run()
    assert not at.exception, at.exception
    at.number_input(key="train_steps").set_value(3)
    at.number_input(key="train_batch").set_value(1)
    at.select_slider(key="train_size").set_value(128)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    job = at.session_state["training_job"]
    job.join(300)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception, at.exception
    assert job.step == 3 and "done: step 3 of 3" in at.get("progress")[0].proto.text
    curves = at.get("plotly_chart")[0].proto.spec
    assert all(term in curves for term in ("rpn_objectness", "rpn_box", "roi_classifier", "roi_box"))
    box = at.selectbox(key="trained_weights")
    chosen = next(o for o in box.options if o.startswith("default-"))
    box.select(chosen).run()
    assert not at.exception, at.exception
    assert any(c.value.startswith(f"Weights: {chosen}") for c in at.sidebar.caption)
    assert at.session_state["settings"].input.min_size == 128  # the trained model's own settings
