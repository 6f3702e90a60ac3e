#!/usr/bin/env python3
"""The ONNX Runtime side of tools/bench_conv.py: one net's forward, timed.

Runs under the benchmark-only venv (.venv-bench/bin/python, made by
tools/setup/make_bench_venv.sh), never under pycaffe's .venv: onnxruntime
needs a newer protobuf. It therefore imports neither caffe nor posenorm.

Input: an .npz written by tools/bench_conv.py holding `data` (N x C x H x W),
`plan` (the layer sequence, e.g. "conv conv1_1", "relu relu1_1",
"pool pool1") and `<conv>/W`, `<conv>/b` for every conv layer. The graph is
built with onnx.helper: Conv (3x3 per the weights, pad 1, stride 1), Relu,
MaxPool 2x2 stride 2 with ceil_mode=1 (Caffe's pooling rounds up). The
session runs on the CPU provider with intra_op_num_threads = --threads and
every graph optimization enabled; the time is the median of --repeats
session.run calls after one warm-up. Prints one JSON line; --out saves the
output (pool5) as .npz so that the caller compares it with Caffe's.
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR of opset 17: the newest onnx writes a newer one by default


def build_model(arrays):
    """The plan of `arrays` as an ONNX ModelProto on input `data`."""
    plan = [str(s).split() for s in arrays['plan']]
    nodes, inits, top = [], [], 'data'
    for kind, name in plan:
        if kind == 'conv':
            w, b = arrays[name + '/W'], arrays[name + '/b']
            inits += [numpy_helper.from_array(w.astype(np.float32), name + '/W'),
                      numpy_helper.from_array(b.astype(np.float32), name + '/b')]
            k = w.shape[2]
            nodes.append(helper.make_node(
                'Conv', [top, name + '/W', name + '/b'], [name], name=name,
                kernel_shape=[k, k], pads=[k // 2] * 4, strides=[1, 1]))
        elif kind == 'relu':
            nodes.append(helper.make_node('Relu', [top], [name], name=name))
        elif kind == 'pool':
            nodes.append(helper.make_node(
                'MaxPool', [top], [name], name=name, kernel_shape=[2, 2],
                strides=[2, 2], ceil_mode=1))
        else:
            raise ValueError('unknown plan step %r' % kind)
        top = name
    shape = list(arrays['data'].shape)
    graph = helper.make_graph(
        nodes, 'vgg16_conv',
        [helper.make_tensor_value_info('data', TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(top, TensorProto.FLOAT, ['n', 'c', 'h', 'w'])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='posenorm bench_conv')
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model, top


def time_session(model, data, threads, repeats):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=['CPUExecutionProvider'])
    times = []
    for _ in range(repeats + 1):  # the first run is a warm-up
        t = time.perf_counter()
        out = sess.run(None, {'data': data})[0]
        times.append(time.perf_counter() - t)
    return out, times[1:], sess.get_providers()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--npz', required=True, help='weights, input and plan from bench_conv.py')
    ap.add_argument('--threads', type=int, required=True, help='intra_op_num_threads')
    ap.add_argument('--repeats', type=int, default=5, help='timed runs after 1 warm-up')
    ap.add_argument('--out', help='save the output blob here (.npz, key "out")')
    args = ap.parse_args(argv)
    with np.load(args.npz) as f:
        arrays = {k: f[k] for k in f.files}
    model, top = build_model(arrays)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    out, times, providers = time_session(model, arrays['data'].astype(np.float32),
                                         args.threads, args.repeats)
    cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    if args.out:
        np.savez(args.out, out=out)
    print(json.dumps(dict(
        fwd=statistics.median(times), times=times, top=top, shape=list(out.shape),
        cores=cores, onnxruntime=ort.__version__, onnx=onnx.__version__,
        numpy=np.__version__, providers=providers, threads=args.threads)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
