"""KServe's own Python model server (the `kserve` package, `kserve.Model` + `ModelServer`)
serving a classifier exported by `veil export --classifier`, in a process of its own. Its REST
server binds every interface when it binds itself, so it is handed a socket bound to
127.0.0.1 here. Nothing of veil runs in it: only the exported folder is read.

    python kserve_model.py MODEL_FOLDER NAME PORT_FILE
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from pathlib import Path

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.protocol.rest.server import RESTServer


class ExportedClassifier(Model):
    def __init__(self, name: str, folder: Path) -> None:
        super().__init__(name)
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.session = ort.InferenceSession(str(folder / "1" / "model.onnx"),
                                            providers=["CPUExecutionProvider"])
        self.ready = True

    def get_input_types(self) -> list[dict]:
        return [self.manifest["input"]]

    def get_output_types(self) -> list[dict]:
        return [self.manifest["output"]]

    async def predict(self, payload: InferRequest, headers=None, response_headers=None
                      ) -> InferResponse:
        images = payload.inputs[0].as_numpy()
        probabilities = self.session.run([self.manifest["output"]["name"]],
                                         {self.manifest["input"]["name"]: images})[0]
        out = InferOutput(name=self.manifest["output"]["name"], shape=list(probabilities.shape),
                          datatype="FP32")
        out.set_data_from_numpy(probabilities, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[out],
                             response_id=payload.id or str(uuid.uuid4()))


def main() -> None:
    folder, name, port_file = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    server = ModelServer(enable_grpc=False)
    server.register_model(ExportedClassifier(name, folder))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    rest = RESTServer("kserve.model_server:app", server.dataplane,
                      server.model_repository_extension, port)
    port_file.write_text(str(port))
    rest.run(sockets=[sock])


if __name__ == "__main__":
    main()
