# posenorm: `make build`, `make test`, `make demo` (each idempotent).
SHELL := /bin/bash
PYTHON ?= $(shell command -v /usr/bin/python3.11 || command -v python3.11)
VENV := .venv
BUILD ?= build/cpu
GPU_BUILD ?= build/gpu
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
VPY := $(VENV)/bin/python

.PHONY: build build-gpu test test-caffe test-python demo correspondence bench-conv deps venv caffe clean help

help:
	@echo "make build      install deps, fetch+build Caffe with our layers (CPU), set up .venv"
	@echo "make test       build, then every test (C++ gtest, nvcc check, pycaffe, pytest)"
	@echo "make demo       build, then the main job (DATA=CUB_200_2011 BACKBONE=vgg16 WEIGHTS=...)"
	@echo "make demo PROTOCOL=frozen DATA=... BACKBONE=vgg16 WEIGHTS=weights/vgg16_init.caffemodel  (CPU: heads on fixed ImageNet features)"
	@echo "make demo PROTOCOL=partial DATA=... BACKBONE=vgg16 WEIGHTS=weights/vgg16_init.caffemodel  (CPU: layers above pool4 fine-tuned from one cached pass)"
	@echo "make build-gpu  CUDA build of Caffe in $(GPU_BUILD) (needs nvcc; ~13 min; NCCL=1 CUDA_ARCH=90)"
	@echo "make demo GPU=0 the main job on a GPU (the CUDA build, made if missing)"
	@echo "make correspondence  build, then every experiment of the second paper (DATA=dir NET=alexnet|caffenet|vgg16|model dir)"
	@echo "make bench-conv VGG-16 conv speed: Caffe's original CPU path, ours, ONNX Runtime -> docs/bench_conv.md (BENCH_CONV_ARGS=...)"

deps:
	@bash tools/setup/install_deps.sh

venv: deps
	@bash tools/setup/make_venv.sh "$(PYTHON)" $(VENV) requirements.txt

caffe: venv
	@mkdir -p $(dir $(BUILD))
	@cmake -S . -B $(BUILD) -DPython3_EXECUTABLE=$(abspath $(VPY)) $(CMAKE_ARGS) > $(BUILD).configure.log 2>&1 \
	  || { mkdir -p build; tail -30 $(BUILD).configure.log; echo "[build] ERROR: configure failed, log: $(BUILD).configure.log"; exit 1; }
	@echo "[build] building Caffe in $(BUILD) (log: $(BUILD).build.log)"
	@cmake --build $(BUILD) -j $(JOBS) > $(BUILD).build.log 2>&1 \
	  || { grep -m 20 -B2 -A8 -E "error|Error" $(BUILD).build.log; echo "[build] ERROR: build failed, log: $(BUILD).build.log"; exit 1; }

build: caffe
	@bash tools/setup/link_venv.sh $(VENV) $(BUILD) .
	@$(VPY) -c "import caffe, posenorm; print('[build] ok: caffe', caffe.__version__, 'with', ', '.join(t for t in caffe.layer_type_list() if t in ('SignedSqrt', 'L2Normalize', 'KeypointSigmoidCrossEntropyLoss', 'CoordinateTransfer', 'CompactBilinear')))"

# GPU: NCCL=1 for multi-GPU training (NCCL_ROOT=dir with include/nccl.h, lib/libnccl.so);
# CUDA_ARCH="90" to build for your GPU only (default: 75 80 86 89 90, or what $(GPU_BUILD) has).
NCCL ?=
NCCL_ROOT ?=
CUDA_ARCH ?=
on = $(filter-out 0 OFF off no false,$(1))
GPU_CMAKE_ARGS = -DUSE_NCCL=$(if $(call on,$(NCCL)),ON,OFF) \
  $(if $(NCCL_ROOT),-DNCCL_ROOT=$(abspath $(NCCL_ROOT))) $(if $(CUDA_ARCH),"-DCUDA_ARCH_BIN=$(CUDA_ARCH)")

build-gpu: venv
	@cmake -S . -B $(GPU_BUILD) -DCPU_ONLY=OFF -DPython3_EXECUTABLE=$(abspath $(VPY)) $(GPU_CMAKE_ARGS) $(CMAKE_ARGS)
	@cmake --build $(GPU_BUILD) -j $(JOBS)
	@echo "[build-gpu] done: $(GPU_BUILD)/caffe-build/tools/caffe (needs an NVIDIA driver for CUDA 13 to run on a GPU)"

test: build
	@bash tests/run_all.sh $(BUILD) $(JOBS)

BACKBONE ?= small
DATA ?=
WEIGHTS ?=
# PROTOCOL=frozen: heads on fixed ImageNet features only; PROTOCOL=partial: the layers above
# pool4 fine-tuned from one cached pass (a CPU can run both); CLASSES=11-50: class ids
PROTOCOL ?=
CLASSES ?=
# GPU=0 (or 0,1 with an NCCL build): the CUDA build's caffe and pycaffe, built if missing.
GPU ?=
demo: $(if $(GPU),venv $(GPU_BUILD)/caffe-build/tools/caffe,build)
	@$(if $(GPU),PYTHONPATH="$(CURDIR)/$(GPU_BUILD)/caffe/python:$(CURDIR)/python" \
	  PATH="$(CURDIR)/$(GPU_BUILD)/caffe-build/tools:$(CURDIR)/$(VENV)/bin:$$PATH",PATH="$(CURDIR)/$(VENV)/bin:$$PATH") \
	  $(VPY) tools/demo.py --backbone $(BACKBONE) $(if $(GPU),--gpu $(GPU)) \
	  $(if $(DATA),--data $(DATA)) $(if $(WEIGHTS),--weights $(WEIGHTS)) \
	  $(if $(PROTOCOL),--protocol $(PROTOCOL)) $(if $(CLASSES),--classes $(CLASSES)) $(DEMO_ARGS)

# The second paper, all of it (tools/correspondence.py all): DATA= a CUB-200-2011 or
# PASCAL VOC 2011 keypoint directory (default: synthetic birds), NET= the backbone.
NET ?=
correspondence: build
	@$(VPY) tools/correspondence.py all $(if $(DATA),--data $(DATA)) $(if $(NET),--net $(NET)) \
	  $(CORRESPONDENCE_ARGS)

# VGG-16 conv1_1..pool5 against ONNX Runtime (issue 17); the ONNX side runs in its own pinned
# venv (.venv-bench: onnxruntime needs a newer protobuf than pycaffe). Takes ~10 min on 2 cores.
BENCH_VENV := .venv-bench
BENCH_CONV_ARGS ?=
bench-conv: build
	@bash tools/setup/make_bench_venv.sh "$(PYTHON)" $(BENCH_VENV) tools/setup/requirements-bench.txt
	@$(VPY) tools/bench_conv.py --bench-python $(BENCH_VENV)/bin/python \
	  --markdown docs/bench_conv.md $(BENCH_CONV_ARGS)

$(GPU_BUILD)/caffe-build/tools/caffe:
	@$(MAKE) --no-print-directory build-gpu

clean:
	rm -rf build
