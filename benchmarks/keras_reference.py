#!/usr/bin/env python3
"""The tutorial's own framework as a peer: its recipe in TensorFlow's Keras 2 API.

MiniGoogLeNet in Keras layers trained on the CIFAR-10 binary files that mgpu reads, with the
tutorial's recipe as Keras 2.0.8 ran it: per-pixel mean image subtracted, ImageDataGenerator
with width/height shifts of 0.1, horizontal flips, fill mode "nearest" and interpolation order 0
(Keras 2.0 resampled with order 0; later versions default to 1), SGD(5e-3, momentum 0.9) with a
LearningRateScheduler for the linear (power 1) decay to zero, batch 64, categorical
cross-entropy, validation on the test images after every epoch. Batches come from the
generator's own iterator, as Keras 2.0's fit_generator drew them: a pass over the images
reshuffles them and ends with a smaller batch when the batch does not divide their number.

Writes OUT_DIR/history.csv with mgpu's columns (epoch, lr, seconds, loss, acc, val_loss,
val_acc) and OUT_DIR/summary.json with the training images per second (validation excluded,
as mgpu's train_images_per_second).

TensorFlow is not a dependency of mgpu: the first run creates a virtual environment of its own
(MGPU_KERAS_VENV, default ~/.cache/mgpu/keras-venv) with the pinned tensorflow-cpu and tf-keras,
and later runs reuse it; the script re-runs itself there. It is kept apart from the torch
environment so that TensorFlow's numpy pin cannot change what LibTorch's tools run with.

    python3 benchmarks/keras_reference.py --data-dir /tmp/cifar --limit-train 5120 \
        --limit-test 1000 --epochs 8 --seed 1 --threads 2 --out-dir runs/keras-s1
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

TENSORFLOW = "tensorflow-cpu==2.21.0"
TF_KERAS = "tf-keras==2.21.0"
VENV = os.environ.get("MGPU_KERAS_VENV", os.path.expanduser("~/.cache/mgpu/keras-venv"))
RECORD = 1 + 3 * 32 * 32  # a CIFAR-10 record: label byte, then the R, G and B planes


def ensure_keras():
    """Re-runs this script in the Keras environment, creating it the first time."""
    try:
        import tf_keras  # noqa: F401
        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        sys.exit(f"keras_reference.py: {VENV} has no tf_keras; remove that folder and rerun")
    if not os.path.exists(python):
        print(f"== creating {VENV} with {TENSORFLOW} and {TF_KERAS} (about 600 MB, once)",
              file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    have = subprocess.run([python, "-c", "import tf_keras"], capture_output=True).returncode == 0
    if not have:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--progress-bar", "off",
                        TENSORFLOW, TF_KERAS, "scipy", "pillow"], check=True)
    os.execv(python, [python] + sys.argv)


def read_cifar10(data_dir, limit_train, limit_test):
    """mgpu's load_cifar10: the first N records of data_batch_1..5.bin and test_batch.bin."""
    import numpy as np
    folder = data_dir
    if not os.path.exists(os.path.join(folder, "test_batch.bin")):
        folder = os.path.join(data_dir, "cifar-10-batches-bin")

    def read(names, limit):
        chunks, have = [], 0
        for name in names:
            if limit and have >= limit:
                break
            path = os.path.join(folder, name)
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size == 0 or raw.size % RECORD:
                sys.exit(f"{path}: expected a whole number of {RECORD}-byte records, "
                         f"found {raw.size} bytes")
            records = raw.reshape(-1, RECORD)
            if limit:
                records = records[:limit - have]
            chunks.append(records)
            have += len(records)
        records = np.concatenate(chunks)
        images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # NHWC, as Keras
        return images, records[:, 0].astype(np.int64)

    for name in ["data_batch_1.bin", "test_batch.bin"]:
        if not os.path.exists(os.path.join(folder, name)):
            sys.exit(f"{os.path.join(folder, name)}: missing (expected CIFAR-10's binary files "
                     f"in --data-dir or its cifar-10-batches-bin/)")
    train = read([f"data_batch_{i}.bin" for i in range(1, 6)], limit_train)
    test = read(["test_batch.bin"], limit_test)
    return train, test


def mini_googlenet(layers, classes):
    """The tutorial's MiniGoogLeNet: conv modules, inception and downsample modules."""
    def conv_module(x, filters, size, stride=1, padding="same"):
        x = layers.Conv2D(filters, size, strides=stride, padding=padding)(x)
        x = layers.BatchNormalization(axis=-1)(x)
        return layers.Activation("relu")(x)

    def inception_module(x, k1x1, k3x3):
        return layers.concatenate([conv_module(x, k1x1, 1), conv_module(x, k3x3, 3)], axis=-1)

    def downsample_module(x, k):
        conv = conv_module(x, k, 3, stride=2, padding="valid")
        pool = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
        return layers.concatenate([conv, pool], axis=-1)

    inputs = layers.Input(shape=(32, 32, 3))
    x = conv_module(inputs, 96, 3)
    x = inception_module(x, 32, 32)
    x = inception_module(x, 32, 48)
    x = downsample_module(x, 80)
    x = inception_module(x, 112, 48)
    x = inception_module(x, 96, 64)
    x = inception_module(x, 80, 80)
    x = inception_module(x, 48, 96)
    x = downsample_module(x, 96)
    x = inception_module(x, 176, 160)
    x = inception_module(x, 176, 160)
    x = layers.AveragePooling2D((7, 7))(x)
    x = layers.Dropout(0.5)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes)(x)
    return inputs, layers.Activation("softmax")(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--epochs", type=int, default=70)
    parser.add_argument("--limit-train", type=int, default=0)
    parser.add_argument("--limit-test", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    ensure_keras()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from tf_keras.preprocessing.image import ImageDataGenerator

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    (train_x, train_y), (test_x, test_y) = read_cifar10(args.data_dir, args.limit_train,
                                                        args.limit_test)
    train_x, test_x = train_x.astype("float"), test_x.astype("float")
    mean = np.mean(train_x, axis=0)  # the per-pixel mean image
    train_x -= mean
    test_x -= mean
    classes = 10
    train_y = keras.utils.to_categorical(train_y, classes)
    test_y = keras.utils.to_categorical(test_y, classes)

    augment = ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
                                 horizontal_flip=True, fill_mode="nearest",
                                 interpolation_order=0)
    # No seed here, as in the tutorial: a seeded iterator reseeds numpy with seed + batches seen
    # before every batch, so that runs with seeds s and s + 1 would draw the same shuffles and
    # shifts one batch apart. set_random_seed above seeds the global numpy generator instead.
    flow = augment.flow(train_x, train_y, batch_size=args.batch)

    def batches():  # Keras 2.0's fit_generator: the iterator's own batches, pass after pass
        while True:
            yield next(flow)

    inputs, outputs = mini_googlenet(keras.layers, classes)
    model = keras.Model(inputs, outputs, name="minigooglenet")
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"],
                  optimizer=keras.optimizers.SGD(learning_rate=args.lr, momentum=0.9))

    def poly_decay(epoch):  # the tutorial's schedule, power 1
        return args.lr * (1 - epoch / float(args.epochs)) ** 1.0

    os.makedirs(args.out_dir, exist_ok=True)
    rows, timing = [], {"train_seconds": 0.0}

    class Timing(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_test_begin(self, logs=None):
            timing["train_seconds"] += time.perf_counter() - self.start

        def on_epoch_end(self, epoch, logs=None):
            rows.append([epoch + 1, poly_decay(epoch), time.perf_counter() - self.start,
                         logs["loss"], logs["accuracy"], logs["val_loss"], logs["val_accuracy"]])
            print(f"epoch {epoch + 1}/{args.epochs}  loss {logs['loss']:.4f}  "
                  f"acc {logs['accuracy']:.4f}  val_loss {logs['val_loss']:.4f}  "
                  f"val_acc {logs['val_accuracy']:.4f}  {rows[-1][2]:.1f} s", flush=True)

    steps = len(train_x) // args.batch
    start = time.perf_counter()
    model.fit(batches(), steps_per_epoch=steps, epochs=args.epochs, verbose=0,
              validation_data=(test_x, test_y),
              callbacks=[keras.callbacks.LearningRateScheduler(poly_decay), Timing()])
    seconds = time.perf_counter() - start

    with open(os.path.join(args.out_dir, "history.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "lr", "seconds", "loss", "acc", "val_loss", "val_acc"])
        for row in rows:
            writer.writerow([row[0]] + [f"{v:.6f}" if i != 0 else f"{v:.10g}"
                                        for i, v in enumerate(row[1:])])
    images = steps * args.batch * args.epochs
    summary = {"framework": f"tensorflow {tf.__version__}, tf-keras {keras.__version__}",
               "epochs": args.epochs, "seed": args.seed, "threads": args.threads,
               "train_images": len(train_x), "test_images": len(test_x),
               "seconds": seconds, "train_images_per_second": images / timing["train_seconds"],
               "final": dict(zip(["loss", "acc", "val_loss", "val_acc"], rows[-1][3:]))}
    with open(os.path.join(args.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{images / timing['train_seconds']:.1f} training images/s, {seconds:.1f} s in all")


if __name__ == "__main__":
    main()
