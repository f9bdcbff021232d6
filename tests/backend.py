"""Backend-neutral test helpers: the same test runs under TensorFlow and JAX."""
import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()

tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="uses TensorFlow directly (tf.function, GradientTape)")


def gradients(fn, arrays):
    """The gradients of ``sum(fn(*arrays))`` with respect to each array, as numpy
    (None where TensorFlow finds no path; JAX gives zeros there)."""
    arrays = [np.asarray(a, np.float32) for a in arrays]
    if BACKEND == "tensorflow":
        import tensorflow as tf
        variables = [tf.Variable(a) for a in arrays]
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(*variables))
        return [None if g is None else np.asarray(g) for g in tape.gradient(loss, variables)]
    if BACKEND == "jax":
        import jax
        grad = jax.grad(lambda *a: jax.numpy.sum(fn(*a)), argnums=tuple(range(len(arrays))))
        return [np.asarray(g) for g in grad(*arrays)]
    raise NotImplementedError(f"no gradient helper for the {BACKEND} backend")


def variable_gradients(loss_fn, variables):
    """The gradients of ``loss_fn()`` (a scalar computed from Keras variables)
    with respect to ``variables``, as backend tensors in the variables' order."""
    if BACKEND == "tensorflow":
        import tensorflow as tf
        with tf.GradientTape() as tape:
            loss = loss_fn()
        return tape.gradient(loss, [v.value for v in variables])
    if BACKEND == "jax":
        import jax

        def stateless_loss(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()
        return jax.grad(stateless_loss)([v.value for v in variables])
    raise NotImplementedError(f"no gradient helper for the {BACKEND} backend")
