"""Small configs shared by several test files (128 px, ResNet-50, few ROIs), and the
helper that makes a briefly trained model of them return instances."""
from mrcnn.config import Config


class SmallConfig(Config):
    NAME = "small"
    NUM_CLASSES = 4
    BACKBONE = "resnet50"
    IMAGES_PER_GPU = 2
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_TRAINING = 200
    POST_NMS_ROIS_INFERENCE = 100
    TRAIN_ROIS_PER_IMAGE = 32
    RPN_TRAIN_ANCHORS_PER_IMAGE = 64
    MAX_GT_INSTANCES = 10
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.0
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1
    MINI_MASK_SHAPE = (28, 28)


class ShapesTrainConfig(SmallConfig):
    """The shapes run of the `trained` fixture (tests/conftest.py)."""
    NAME = "shapes"
    STEPS_PER_EPOCH = 8
    VALIDATION_STEPS = 1
    LEARNING_RATE = 0.01


def never_background(inference_model):
    """Lowers the background logit of `inference_model`'s class head by 20, in place, so
    that a model trained only a few steps still returns instances for detect() to unmold
    (its head may otherwise call every ROI background)."""
    logits = inference_model.keras_model.get_layer("mrcnn_class_logits")
    kernel, bias = logits.get_weights()
    bias[0] -= 20.0
    logits.set_weights([kernel, bias])
