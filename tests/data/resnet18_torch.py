"""ResNet-18 as torchvision builds it (BasicBlock written out, so torchvision is not needed),
and its CIFAR variant (3x3 stem, no max-pool, 10 classes). One copy for the tests that import
a PyTorch model: `tests/test_workloads_torch_import.py` imports it, and
`tests/test_torch_cli.py` loads this file as `FILE.py:resnet18` from the command line."""

import torch
from torch import nn


class Block(nn.Module):
    """torchvision's BasicBlock, written out so that torchvision is not needed."""

    def __init__(self, inp: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inp != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inp, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu2(out + identity)


class ResNet18(nn.Module):
    def __init__(self, cifar: bool = False) -> None:
        super().__init__()
        self.conv1 = (nn.Conv2d(3, 64, 3, 1, 1, bias=False) if cifar
                      else nn.Conv2d(3, 64, 7, 2, 3, bias=False))
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar else nn.MaxPool2d(3, 2, 1)
        inp = 64
        for i, planes in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(Block(inp, planes, stride),
                                                         Block(planes, planes, 1)))
            inp = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, 10 if cifar else 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(cifar: bool = False) -> ResNet18:
    return ResNet18(cifar)
