"""A model served by Triton Inference Server: ``triton://HOST:PORT/NAME``.

The server is ``deen serve`` or any Triton serving a ``deen export --engine triton``
repository. On connect the client reads the served model's export manifest (from the model
config's ``deen_manifest`` parameter, else from the ``NAME_manifest`` model ``deen serve``
adds) and takes the input size, embedding size, variant and embedding settings from it,
as it would from a file's manifest; a model that is not a deen export is refused in one
line. Requests go over HTTP (tritonclient); the server batches concurrent requests from
many boxes (dynamic batching).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import numpy as np

from deen.backends.artifact import (
    INPUT_IMAGES,
    INPUT_MODALITY,
    MANIFEST_PARAMETER,
    OUTPUT_EMBEDDING,
    parse_manifest,
)
from deen.backends.base import Embedder, validated_batch
from deen.errors import DeenError, first_line, redact_url

SCHEME = "triton"
#: Seconds to wait for the server when connecting and for each request.
TIMEOUT_S = 10.0


def is_triton_url(text: object) -> bool:
    return str(text).lower().startswith(f"{SCHEME}://")


class TritonEmbedder(Embedder):
    backend = "triton"

    def __init__(self, url: str, *, device: str | None = None) -> None:
        import tritonclient.http as http

        self.url = redact_url(str(url))  # how messages name it
        parts = urlsplit(str(url))
        try:
            port = parts.port
        except ValueError:
            port = None
        name = parts.path.strip("/")
        if parts.scheme != SCHEME or not parts.hostname or port is None or not name \
                or "/" in name or "@" in parts.netloc:
            raise DeenError(f"{self.url}: expected triton://HOST:PORT/NAME (a served model "
                            "takes no user or password)")
        self.name, self._http = name, http
        self.client = http.InferenceServerClient(f"{parts.hostname}:{port}",
                                                 connection_timeout=TIMEOUT_S,
                                                 network_timeout=TIMEOUT_S)
        try:
            live = self.client.is_server_live()
        except Exception as exc:  # tritonclient raises socket and gevent errors as they come
            raise DeenError(f"{self.url}: cannot reach the model server "
                            f"({first_line(exc)})") from None
        if not live:
            raise DeenError(f"{self.url}: the model server is not live")
        if not self.client.is_model_ready(name):
            raise DeenError(f"{self.url}: the server has no ready model {name!r}")
        model_config = self.client.get_model_config(name)
        self.manifest = self._read_manifest(model_config)
        self.adopt(self.manifest)
        #: The server refuses larger requests; bigger batches are sent in parts.
        self.max_batch = int(model_config.get("max_batch_size") or 0)

    @classmethod
    def open(cls, path, *, config=None, variant=None, device=None) -> TritonEmbedder:
        return cls(str(path), device=device)

    def _read_manifest(self, model_config: dict) -> dict:
        """From the model's config (a ``deen export --engine triton`` repository carries it
        as a parameter) or else from the ``NAME_manifest`` model ``deen serve`` adds."""
        carried = model_config.get("parameters", {}).get(MANIFEST_PARAMETER)
        if carried:
            return parse_manifest(carried["string_value"], self.url)
        if not self.client.is_model_ready(f"{self.name}_manifest"):
            raise DeenError(f"{self.url}: the served model carries no deen export manifest "
                            "(neither a deen serve model nor a deen Triton repository's)")
        ask = self._http.InferInput("request", [1, 1], "UINT8")
        ask.set_data_from_numpy(np.zeros((1, 1), np.uint8))
        try:
            result = self.client.infer(f"{self.name}_manifest", [ask])
            text = result.as_numpy("manifest").reshape(-1)[0]
        except Exception as exc:
            raise DeenError(f"{self.url}: no manifest from the server ({first_line(exc)})"
                            ) from None
        return parse_manifest(text.decode() if isinstance(text, bytes) else str(text),
                              self.url)

    def run(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        images, modality = validated_batch(images, modality, self.input_size)
        step = self.max_batch or len(images)
        if len(images) > step:
            return np.concatenate([self._infer(images[i:i + step], modality[i:i + step])
                                   for i in range(0, len(images), step)])
        return self._infer(images, modality)

    def _infer(self, images: np.ndarray, modality: np.ndarray) -> np.ndarray:
        inputs = [self._http.InferInput(INPUT_IMAGES, list(images.shape), "FP32"),
                  self._http.InferInput(INPUT_MODALITY, [len(modality), 1], "INT64")]
        inputs[0].set_data_from_numpy(images)
        inputs[1].set_data_from_numpy(modality.reshape(-1, 1))
        try:
            result = self.client.infer(self.name, inputs)
        except Exception as exc:
            raise DeenError(f"{self.url}: request failed ({first_line(exc)})") from None
        return np.asarray(result.as_numpy(OUTPUT_EMBEDDING), dtype=np.float32)

    def fingerprint(self) -> str:
        """The served export's identity: its whole manifest (what it was made from, how and
        when), so a gallery stays tied to the one export the server serves."""
        return json.dumps(self.manifest, sort_keys=True)
