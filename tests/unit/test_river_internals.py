"""Guard for the private River attribute :mod:`online_models.river_internals` writes."""

from river import linear_model, utils

from online_models.river_internals import set_linear_weights


def test_linear_model_keeps_its_weights_in_a_vector_dict():
    model = linear_model.LogisticRegression()
    model.learn_one({"a": 1.0, "b": 0.5}, True)
    assert isinstance(model._weights, utils.VectorDict)
    assert model.weights is not model._weights  # the public view is a copy


def test_written_weights_and_intercept_drive_predictions():
    model = linear_model.LogisticRegression()
    set_linear_weights(model, [("a", 3.0), ("b", -1.0)], 0.5)
    assert model.weights == {"a": 3.0, "b": -1.0}
    assert model.intercept == 0.5
    p = model.predict_proba_one({"a": 1.0, "b": 1.0})[True]
    assert abs(p - 1 / (1 + 2.718281828459045 ** -(3.0 - 1.0 + 0.5))) < 1e-9
