from thunder_dagster.modeling.training import Budget, steps_per_epoch


def test_an_epoch_never_covers_a_small_text_more_than_about_twice():
    budget = Budget(epochs=1, steps_per_epoch=100, batch_size=128)
    assert steps_per_epoch(budget, 1_000_000, 64) == 100
    assert steps_per_epoch(budget, 100_000, 64) == 25
    assert steps_per_epoch(budget, 16_000, 64) == 10
    assert steps_per_epoch(Budget(epochs=1, steps_per_epoch=3), 16_000, 64) == 3
