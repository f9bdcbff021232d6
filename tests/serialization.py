"""Serialization round trip for layer tests, in the style of keras-hub's
``run_serialization_test``: a layer must come back equal through its own
``get_config``/``from_config`` and through Keras' registered-object path
(``serialize_keras_object``/``deserialize_keras_object``), which is what
``keras.saving`` uses for a saved model and fails for unregistered classes.
"""
import json

import keras


def assert_serialization_round_trip(layer):
    """Round-trips `layer` both ways; returns the deserialised clone.

    Asserts that the config is JSON-serialisable, that ``from_config`` and
    ``deserialize_keras_object`` give a layer of the same class with the same
    config, and that serialising the clone again gives the same dict.
    """
    config = layer.get_config()
    json.dumps(config)  # a saved model stores it as JSON
    clone = type(layer).from_config(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == config

    serialized = keras.saving.serialize_keras_object(layer)
    json.dumps(serialized)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(layer), (
        f"{type(layer).__name__} is not registered with keras.saving "
        f"(deserialised as {type(revived).__name__})")
    assert revived.get_config() == config
    assert keras.saving.serialize_keras_object(revived) == serialized
    return revived
