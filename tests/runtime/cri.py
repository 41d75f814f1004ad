#!/usr/bin/python3
"""Minimal CRI client for the runtime tests: a crictl stand-in (Debian 12 has
no crictl) speaking runtime.v1 to containerd's CRI plugin over its unix socket.

It needs Debian's python3-grpcio and python3-protobuf, so run it with
/usr/bin/python3 (a pyenv python3 earlier on PATH cannot import them), and the
module protoc generates from cri_min.proto (`protoc --python_out=DIR`), found
in --pb-dir. Every command prints one JSON document on stdout; a gRPC error
prints "<CODE>: <details>" on stderr (details carry containerd's message,
e.g. the CNI plugin's error) and exits 3.

usage: cri.py --sock SOCK --pb-dir DIR COMMAND [ARG]
  version | status | images | pods
  runp            PodSandboxConfig as JSON on stdin -> {"id": ..., "elapsed_ms": RPC time}
  inspectp ID     PodSandboxStatus(verbose), "info" values decoded
  stopp ID | rmp ID
  create          {"pod_sandbox_id", "config", "sandbox_config"} on stdin -> {"id": ...}
  start ID | rm ID
  stop ID TIMEOUT_S
  inspect ID      ContainerStatus(verbose), "info" values decoded
  exec ID         {"cmd": [...], "timeout": S} on stdin -> {"exit_code", "stdout", "stderr"}
"""
import argparse
import json
import sys
import time

RUNTIME = "/runtime.v1.RuntimeService/"
IMAGE = "/runtime.v1.ImageService/"


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("--sock", required=True)
    ap.add_argument("--pb-dir", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("command")
    ap.add_argument("arg", nargs="?")
    ap.add_argument("arg2", nargs="?")
    a = ap.parse_args()

    sys.path.insert(0, a.pb_dir)
    import grpc
    from google.protobuf import json_format
    import cri_min_pb2 as pb

    channel = grpc.insecure_channel("unix://" + a.sock)

    def call(service, method, request, response_type):
        rpc = channel.unary_unary(
            service + method,
            request_serializer=request.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return rpc(request, timeout=a.timeout)

    def as_dict(msg):
        d = json_format.MessageToDict(
            msg, preserving_proto_field_name=True, including_default_value_fields=True
        )
        # Verbose "info" values are JSON documents serialised as strings.
        for k, v in list(d.get("info", {}).items()):
            try:
                d["info"][k] = json.loads(v)
            except ValueError:
                pass
        return d

    cmd, arg = a.command, a.arg
    if cmd in ("inspectp", "stopp", "rmp") and not arg:
        ap.error(cmd + " needs a sandbox id")
    if cmd in ("start", "rm", "stop", "inspect", "exec") and not arg:
        ap.error(cmd + " needs a container id")
    try:
        if cmd == "version":
            out = as_dict(call(RUNTIME, "Version", pb.VersionRequest(version="v1"), pb.VersionResponse))
        elif cmd == "status":
            out = as_dict(call(RUNTIME, "Status", pb.StatusRequest(verbose=True), pb.StatusResponse))
        elif cmd == "images":
            out = as_dict(call(IMAGE, "ListImages", pb.ListImagesRequest(), pb.ListImagesResponse))
        elif cmd == "pods":
            out = as_dict(call(RUNTIME, "ListPodSandbox", pb.ListPodSandboxRequest(), pb.ListPodSandboxResponse))
        elif cmd == "runp":
            config = json_format.ParseDict(json.load(sys.stdin), pb.PodSandboxConfig())
            started = time.monotonic()
            resp = call(RUNTIME, "RunPodSandbox", pb.RunPodSandboxRequest(config=config), pb.RunPodSandboxResponse)
            # The RPC alone, without this client's start-up (tens of ms).
            out = {"id": resp.pod_sandbox_id, "elapsed_ms": (time.monotonic() - started) * 1e3}
        elif cmd == "inspectp":
            req = pb.PodSandboxStatusRequest(pod_sandbox_id=arg, verbose=True)
            out = as_dict(call(RUNTIME, "PodSandboxStatus", req, pb.PodSandboxStatusResponse))
        elif cmd == "stopp":
            call(RUNTIME, "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=arg), pb.StopPodSandboxResponse)
            out = {"id": arg}
        elif cmd == "rmp":
            call(RUNTIME, "RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=arg), pb.RemovePodSandboxResponse)
            out = {"id": arg}
        elif cmd == "create":
            req = json_format.ParseDict(json.load(sys.stdin), pb.CreateContainerRequest())
            out = {"id": call(RUNTIME, "CreateContainer", req, pb.CreateContainerResponse).container_id}
        elif cmd == "start":
            call(RUNTIME, "StartContainer", pb.StartContainerRequest(container_id=arg), pb.StartContainerResponse)
            out = {"id": arg}
        elif cmd == "stop":
            req = pb.StopContainerRequest(container_id=arg, timeout=int(a.arg2 or 0))
            call(RUNTIME, "StopContainer", req, pb.StopContainerResponse)
            out = {"id": arg}
        elif cmd == "rm":
            call(RUNTIME, "RemoveContainer", pb.RemoveContainerRequest(container_id=arg), pb.RemoveContainerResponse)
            out = {"id": arg}
        elif cmd == "inspect":
            req = pb.ContainerStatusRequest(container_id=arg, verbose=True)
            out = as_dict(call(RUNTIME, "ContainerStatus", req, pb.ContainerStatusResponse))
        elif cmd == "exec":
            spec = json.load(sys.stdin)
            req = pb.ExecSyncRequest(container_id=arg, cmd=spec["cmd"], timeout=int(spec.get("timeout", 1)))
            resp = call(RUNTIME, "ExecSync", req, pb.ExecSyncResponse)
            out = {
                "exit_code": resp.exit_code,
                "stdout": resp.stdout.decode(errors="replace"),
                "stderr": resp.stderr.decode(errors="replace"),
            }
        else:
            ap.error("unknown command " + cmd)
    except grpc.RpcError as e:
        sys.stderr.write("%s: %s\n" % (e.code().name, e.details()))
        return 3
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
