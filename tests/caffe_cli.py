"""Running the `caffe` tool on a prototxt, for tests of its error messages."""
import subprocess


def run_caffe_on(tmp_path, caffe_tool, text):
    """`caffe time` on a net given as prototxt text; the CompletedProcess."""
    path = tmp_path / 'bad.prototxt'
    path.write_text(text)
    return subprocess.run([caffe_tool, 'time', '--model', str(path),
                           '--iterations', '1'], capture_output=True, text=True)


def input_layer(name, dims):
    """An Input layer whose top `name` has shape `dims`."""
    return ('layer { name: "%s" type: "Input" top: "%s" input_param { shape { '
            '%s } } }\n' % (name, name, ' '.join('dim: %d' % d for d in dims)))
