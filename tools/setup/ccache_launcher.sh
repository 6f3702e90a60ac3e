#!/bin/sh
# Compiler launcher: ccache with CCACHE_BASEDIR set to the checkout, so cache
# hits do not depend on where the checkout (or the build flavour) lives.
CCACHE_BASEDIR=$(cd "$(dirname "$0")/../.." && pwd)
export CCACHE_BASEDIR
exec ccache "$@"
