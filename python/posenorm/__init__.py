"""posenorm: pose-normalized fine-grained recognition on BVLC Caffe.

Reproduces Branson et al., "Bird Species Categorization Using Pose Normalized
Deep Convolutional Networks" (BMVC 2014) and the keypoint tools of Long et al.,
"Do Convnets Learn Correspondence?" (NIPS 2014), with the layers compiled into
Caffe (see layers/).
"""

__version__ = '0.1.0'
