"""Runs in .dev/venv-kserve: drives a v2 server with KServe's own Python client.

Usage: python kserve_client.py BASE_URL MODEL INPUT_NAME ROWS_JSON
Prints one JSON object with what the client saw; test_conformance_kserve.py asserts on it.
"""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def run(base_url: str, model: str, input_name: str, rows: list[list[float]]) -> dict:
    client = InferenceRESTClient(config=RESTConfig(protocol="v2", retries=0, timeout=30))
    out: dict = {}
    try:
        out["live"] = await client.is_server_live(base_url)
        out["ready"] = await client.is_server_ready(base_url)
        out["model_ready"] = await client.is_model_ready(base_url, model)
        x = np.asarray(rows, dtype=np.float32)
        tensor = InferInput(name=input_name, shape=list(x.shape), datatype="FP32")
        tensor.set_data_from_numpy(x)
        request = InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-1")
        response = await client.infer(base_url, request, model_name=model)
        out["id"] = response.id
        out["model_name"] = response.model_name
        out["outputs"] = {
            o.name: {
                "datatype": o.datatype,
                "shape": list(o.shape),
                "data": o.as_numpy().ravel().tolist(),
            }
            for o in response.outputs
        }
        # An invalid request must come back as an HTTP error the client can report.
        bad = InferInput(name=input_name, shape=[1, 3], datatype="FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        try:
            await client.infer(
                base_url, InferRequest(model_name=model, infer_inputs=[bad]), model_name=model
            )
            out["bad_request"] = "accepted"
        except Exception as e:  # the client raises httpx.HTTPStatusError
            response = getattr(e, "response", None)
            out["bad_request"] = {
                "status": getattr(response, "status_code", None),
                "body": response.json() if response is not None else str(e),
            }
        try:
            out["unknown_model_ready"] = await client.is_model_ready(base_url, "no-such-model")
        except Exception as e:
            response = getattr(e, "response", None)
            out["unknown_model_ready"] = getattr(response, "status_code", type(e).__name__)
    finally:
        await client.close()
    return out


if __name__ == "__main__":
    url, model_name, name, rows_json = sys.argv[1:5]
    print(json.dumps(asyncio.run(run(url, model_name, name, json.loads(rows_json)))))
