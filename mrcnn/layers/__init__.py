"""Keras layers and sub-graphs of Mask R-CNN (keras.ops only; tf.* lives in mrcnn.graph_ops)."""
