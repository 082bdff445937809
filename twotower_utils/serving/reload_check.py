"""Query an exported model from a process that imports only TensorFlow (and ScaNN for a ScaNN export).

Run as a script, not imported: ``python -I reload_check.py < request.json``.  The request is
``{"path": version folder, "user_ids": [...], "titles": [...], "k": 10}``; the answer, on stdout, holds each
signature's outputs as lists plus the top-level modules the process imported.  ``export.reload_check``
runs it and compares the answer with the in-memory model.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    request = json.load(sys.stdin)
    path = request["path"]
    metadata_path = os.path.join(path, "assets.extra", "twotower.json")
    with open(metadata_path) as handle:
        metadata = json.load(handle)
    if metadata["index"] == "scann":
        import scann  # noqa: F401  (registers the Scann ops; TFRS #182)
    import tensorflow as tf

    model = tf.saved_model.load(path)
    k = tf.constant(int(request["k"]), tf.int32)
    users = tf.constant(request["user_ids"], tf.string)
    titles = tf.constant(request["titles"], tf.string)
    answer = {"signatures": sorted(model.signatures)}
    for name, inputs in (
        ("serving_default", {"user_id": users, "k": k}),
        ("recommend_including_seen", {"user_id": users, "k": k}),
        ("similar_movies", {"title": titles, "k": k}),
    ):
        outputs = model.signatures[name](**inputs)
        answer[name] = {key: _plain(value.numpy()) for key, value in outputs.items()}
    answer["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    json.dump(answer, sys.stdout)
    return 0


def _plain(array):
    if array.dtype.kind in "SO":
        return [row.decode() if isinstance(row, bytes) else [t.decode() for t in row] for row in array]
    return array.tolist()


if __name__ == "__main__":
    sys.exit(main())
