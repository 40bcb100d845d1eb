import numpy as np
from PIL import Image

from ember.callbacks import History


def test_history_is_a_dataframe_that_keeps_its_type():
    h = History([{"epoch": 1, "loss": 0.5, "val_loss": 0.6}, {"epoch": 2, "loss": 0.25, "val_loss": 0.3}])
    assert isinstance(h.tail(1), History)
    assert h["loss"].tolist() == [0.5, 0.25]


def test_plot_writes_a_non_blank_png(tmp_path):
    h = History(
        [
            {
                "epoch": e,
                "loss": 1 / e,
                "accuracy": 1 - 1 / (e + 1),
                "val_loss": 1.2 / e,
                "val_accuracy": 0.9 - 1 / (e + 2),
                "lr": 0.1,
                "seconds": 1.0,
            }
            for e in (1, 2, 3)
        ]
    )
    figure = h.plot(path=tmp_path / "h.png")
    assert [ax.get_title() for ax in figure.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in figure.axes[0].lines] == ["loss", "val_loss"]
    image = np.asarray(Image.open(tmp_path / "h.png").convert("L"))
    assert image.shape == (350, 900)
    assert image.std() > 10  # not a blank canvas
