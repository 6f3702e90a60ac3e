"""posenorm: pose-normalized fine-grained recognition on BVLC Caffe.

Reproduces Zhang, Shelhamer, Gao and Darrell, "Fine-grained pose prediction,
normalization, and recognition" (ICLR 2016 workshop submission), and the
keypoint tools of Long, Zhang and Darrell, "Do Convnets Learn
Correspondence?" (NIPS 2014), with the layers compiled into Caffe (layers/).
"""

__version__ = '0.1.0'
