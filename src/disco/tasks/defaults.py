"""The tasks a fresh server offers: titanic (tabular), mnist and cifar10 (images).

Task texts and training settings follow DISCO's own default tasks (@epfml/discojs 2.1.1), with
the scheme spelled as the client's `TrainingSchemes` value ('federated'). Models are small
Sequential networks generated here deterministically (seeded Glorot-uniform kernels, zero biases),
so the package needs neither TensorFlow nor node and every server starts from the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np

from disco.tasks.artifacts import ModelArtifacts
from disco.tasks.schema import Task, parse_task
from disco.tasks.sequential import SequentialBuilder

_LINK_CLASS: Final = "underline text-primary-dark dark:text-primary-light"
CIFAR10_LABELS: Final = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TITANIC_HEADERS: Final = (
    "PassengerId",
    "Survived",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
    "Pclass",
)
_TITANIC_EXAMPLE: Final = (
    "1",
    "0",
    "Braund, Mr. Owen Harris",
    "male",
    "22",
    "1",
    "0",
    "1/5 21171",
    "7.25",
    "E46",
    "S",
    "3",
)
# One seed per task: the initial weights never change between releases or machines.
SEEDS: Final = {"titanic": 20_240_101, "mnist": 20_240_102, "cifar10": 20_240_103}


def titanic_task() -> dict[str, Any]:
    """DISCO's titanic task (tabular, binary survival prediction)."""
    return {
        "taskID": "titanic",
        "displayInformation": {
            "taskTitle": "Titanic",
            "summary": {
                "preview": (
                    "Test our platform by using a publicly available <b>tabular</b> dataset. "
                    "<br><br> Download the passenger list from the Titanic shipwreck here: "
                    f"<a class='{_LINK_CLASS}' href='https://github.com/epfml/disco/raw/develop/"
                    "example_training_data/titanic_train.csv'>titanic_train.csv</a> (more info "
                    f"<a class='{_LINK_CLASS}' href='https://www.kaggle.com/c/titanic'>here</a>)."
                    " <br> This model predicts the type of person most likely to survive/die in "
                    "the historic ship accident, based on their characteristics (sex, age, class "
                    "etc.)."
                ),
                "overview": (
                    "We all know the unfortunate story of the Titanic: this flamboyant new "
                    "transatlantic boat that sunk in 1912 in the North Atlantic Ocean. Today, we "
                    "revist this tragedy by trying to predict the survival odds of the passenger "
                    "given some basic features."
                ),
            },
            "model": (
                "The current model does not normalize the given data and applies only a very "
                "simple pre-processing of the data."
            ),
            "tradeoffs": (
                "We are using a small model for this task: 4 fully connected layers with few "
                "neurons. This allows fast training but can yield to reduced accuracy."
            ),
            "dataFormatInformation": (
                "This model takes as input a CSV file with 12 columns. The features are general "
                "information about the passenger (sex, age, name, etc.) and specific related "
                "Titanic data such as the ticket class bought by the passenger, its cabin "
                "number, etc.<br><br>pclass: A proxy for socio-economic status (SES)<br>1st = "
                "Upper<br>2nd = Middle<br>3rd = Lower<br><br>age: Age is fractional if less than "
                "1. If the age is estimated, it is in the form of xx.5<br><br>sibsp: The dataset "
                "defines family relations in this way:<br>Sibling = brother, sister, "
                "stepbrother, stepsister<br>Spouse = husband, wife (mistresses and fiancés were "
                "ignored)<br><br>parch: The dataset defines family relations in this way:<br>"
                "Parent = mother, father<br>Child = daughter, son, stepdaughter, stepson<br>Some "
                "children travelled only with a nanny, therefore parch=0 for them.<br><br>The "
                "first line of the CSV contains the header:<br> PassengerId, Survived, Pclass, "
                "Name, Sex, Age, SibSp, Parch, Ticket, Fare, Cabin, Embarked<br><br>Each "
                "susequent row contains the corresponding data."
            ),
            "dataExampleText": (
                "Below one can find an example of a datapoint taken as input by our model. In "
                "this datapoint, the person is young man named Owen Harris that unfortunnalty "
                "perished with the Titanic. He boarded the boat in South Hamptons and was a 3rd "
                "class passenger. On the testing & validation page, the data should not contain "
                "the label column (Survived)."
            ),
            "dataExample": [
                {"columnName": name, "columnData": value}
                for name, value in zip(TITANIC_HEADERS, _TITANIC_EXAMPLE, strict=True)
            ],
            "headers": list(TITANIC_HEADERS),
            "limitations": (
                "Rows with missing values in the input columns (Age is often empty) must be "
                "filled or dropped before training; the features are not normalized."
            ),
        },
        "trainingInformation": {
            "modelID": "titanic-model",
            "epochs": 20,
            "roundDuration": 10,
            "validationSplit": 0,
            "batchSize": 30,
            "preprocessingFunctions": [],
            "modelCompileData": {
                "optimizer": "rmsprop",
                "loss": "binaryCrossentropy",
                "metrics": ["accuracy"],
            },
            "dataType": "tabular",
            "inputColumns": ["PassengerId", "Age", "SibSp", "Parch", "Fare", "Pclass"],
            "outputColumns": ["Survived"],
            "scheme": "federated",
            "learningRate": 0.001,
            "minimumReadyPeers": 3,
        },
    }


def mnist_task() -> dict[str, Any]:
    """DISCO's MNIST task (28×28 grayscale digits, 10 classes)."""
    return {
        "taskID": "mnist",
        "displayInformation": {
            "taskTitle": "MNIST",
            "summary": {
                "preview": (
                    "Test our platform by using a publicly available <b>image</b> dataset. "
                    "<br><br> Download the classic MNIST imagebank of hand-written numbers "
                    f"<a class='{_LINK_CLASS}' href='https://www.kaggle.com/scolianni/mnistasjpg'>"
                    "here</a>. <br> This model learns to identify hand written numbers."
                ),
                "overview": (
                    "The MNIST handwritten digit classification problem is a standard dataset "
                    "used in computer vision and deep learning. Although the dataset is "
                    "effectively solved, we use it to test our Decentralised Learning algorithms "
                    "and platform."
                ),
            },
            "model": (
                "The current model is a very simple CNN and its main goal is to test the app and "
                "the Decentralizsed Learning functionality."
            ),
            "tradeoffs": (
                "We are using a simple model, first a 2d convolutional layer > max pooling > 2d "
                "convolutional layer > max pooling > 2 dense layers."
            ),
            "dataFormatInformation": (
                "This model is trained on images corresponding to digits 0 to 9. You can upload "
                "each digit image of your dataset in the box corresponding to its label. The "
                "model taskes images of size 28x28 as input (one grayscale channel)."
            ),
            "dataExampleText": (
                "Below you can find an example of an expected image representing the digit 9."
            ),
            "dataExampleImage": (
                "http://storage.googleapis.com/deai-313515.appspot.com/example_training_data/"
                "9-mnist-example.png"
            ),
            "limitations": (
                "Images must be 28x28 grayscale digits; pixel values are used as given (no "
                "normalization step is configured)."
            ),
        },
        "trainingInformation": {
            "modelID": "mnist-model",
            "epochs": 10,
            "roundDuration": 10,
            "validationSplit": 0.2,
            "batchSize": 30,
            "modelCompileData": {
                "optimizer": "rmsprop",
                "loss": "categoricalCrossentropy",
                "metrics": ["accuracy"],
            },
            "dataType": "image",
            "IMAGE_H": 28,
            "IMAGE_W": 28,
            "preprocessingFunctions": ["normalize"],
            "LABEL_LIST": [str(digit) for digit in range(10)],
            "scheme": "federated",
            "learningRate": 0.001,
            "clippingRadius": 20,
            "decentralizedSecure": True,
            "minimumReadyPeers": 3,
            "maxShareValue": 100,
        },
    }


def cifar10_task() -> dict[str, Any]:
    """DISCO's CIFAR-10 task (32×32 RGB images, 10 named classes)."""
    return {
        "taskID": "cifar10",
        "displayInformation": {
            "taskTitle": "CIFAR10",
            "summary": {
                "preview": (
                    "In this challenge, we ask you to classify images into categories based on "
                    "the objects shown on the image."
                ),
                "overview": (
                    "The CIFAR-10 dataset is a collection of images that are commonly used to "
                    "train machine learning and computer vision algorithms. It is one of the "
                    "most widely used datasets for machine learning research."
                ),
            },
            "model": (
                "A small CNN: 2d convolutional layer > max pooling > 2d convolutional layer > "
                "max pooling > 2 dense layers, ending in a softmax over the 10 classes."
            ),
            "limitations": "The training data is limited to small images of size 32x32.",
            "tradeoffs": "Training success strongly depends on label distribution",
            "dataFormatInformation": (
                "Images should be of .png format and of size 32x32. <br> The label file should "
                "be .csv, where each row contains a file_name, class.  <br> <br> e.g. if you "
                "have images: 0.png (of a frog) and 1.png (of a car) <br> labels.csv contains: "
                "(Note that no header is needed)<br> 0.png, frog <br> 1.png, car"
            ),
            "dataExampleText": (
                "Below you can find 10 random examples from each of the 10 classes in the dataset."
            ),
            "dataExampleImage": (
                "https://storage.googleapis.com/deai-313515.appspot.com/example_training_data/"
                "cifar10-example.png"
            ),
        },
        "trainingInformation": {
            "modelID": "cifar10-model",
            "epochs": 10,
            "roundDuration": 10,
            "validationSplit": 0.2,
            "batchSize": 10,
            "modelCompileData": {
                "optimizer": "sgd",
                "loss": "categoricalCrossentropy",
                "metrics": ["accuracy"],
            },
            "dataType": "image",
            "IMAGE_H": 32,
            "IMAGE_W": 32,
            "preprocessingFunctions": ["normalize"],
            "LABEL_LIST": list(CIFAR10_LABELS),
            "scheme": "federated",
            "learningRate": 0.01,
            "clippingRadius": 20,
            "decentralizedSecure": True,
            "minimumReadyPeers": 3,
            "maxShareValue": 100,
        },
    }


def titanic_model(rng: np.random.Generator) -> ModelArtifacts:
    """Dense 6 → 124 → 64 → 32 (relu) → 1 (sigmoid), as DISCO's titanic model."""
    builder = SequentialBuilder((6,))
    builder.dense(124, "relu").dense(64, "relu").dense(32, "relu").dense(1, "sigmoid")
    return builder.build(rng)


def small_cnn(rng: np.random.Generator, input_shape: tuple[int, int, int]) -> ModelArtifacts:
    """Conv 3×3×32 → pool 2 → conv 3×3×64 → pool 2 → flatten → dense 64 → dense 10 (softmax)."""
    builder = SequentialBuilder(input_shape)
    builder.conv2d(32, 3, "relu").max_pooling2d(2).conv2d(64, 3, "relu").max_pooling2d(2)
    builder.flatten().dense(64, "relu").dense(10, "softmax")
    return builder.build(rng)


def mnist_model(rng: np.random.Generator) -> ModelArtifacts:
    """The small CNN on 28×28×1 inputs."""
    return small_cnn(rng, (28, 28, 1))


def cifar10_model(rng: np.random.Generator) -> ModelArtifacts:
    """The small CNN on 32×32×3 inputs."""
    return small_cnn(rng, (32, 32, 3))


_DEFAULTS: Final[
    tuple[tuple[Callable[[], dict[str, Any]], Callable[[np.random.Generator], ModelArtifacts]], ...]
] = (
    (titanic_task, titanic_model),
    (mnist_task, mnist_model),
    (cifar10_task, cifar10_model),
)


def default_tasks() -> list[tuple[Task, ModelArtifacts]]:
    """Every default task with its initial model; identical on every call and machine."""
    result = []
    for make_task, make_model in _DEFAULTS:
        task = parse_task(make_task())
        rng = np.random.Generator(np.random.PCG64(SEEDS[task.task_id]))
        result.append((task, make_model(rng)))
    return result


DEFAULT_TASK_IDS: Final = tuple(SEEDS)
