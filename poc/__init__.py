"""ResNet-50 / CIFAR-100 batch-inference toolkit for the Ascend 310P flow, with a CPU fallback."""
