import torch
from torch import nn

from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.training.config import TrainConfig
from tinymnist.training.precise_bn import recalibrate_batchnorm
from tinymnist.training.trainer import train

SMALL = dict(train_subset=512, test_subset=500, batch_size=64, epochs=2, threads=1)


def test_recalibrated_statistics_are_those_of_the_images():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Dropout(0.5))
    images = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8)
    model.train()
    assert recalibrate_batchnorm(model, images, batch_size=100) == 1
    assert model.training and model[1].momentum == 0.1  # mode and momentum restored
    with torch.no_grad():
        features = model[0](images.float().div(255).sub(MNIST_MEAN).div(MNIST_STD))
    bn = model[1]
    assert torch.allclose(bn.running_mean, features.mean((0, 2, 3)), atol=1e-5)
    # equal batches: the average of per-batch unbiased variances, close to the population's
    assert torch.allclose(bn.running_var, features.var((0, 2, 3)), rtol=0.02)


def test_precise_bn_changes_evaluation_not_the_training_trajectory(mnist, tmp_path):
    plain = train(TrainConfig(**SMALL), mnist, tmp_path / "plain")
    precise = train(TrainConfig(**SMALL, precise_bn=256), mnist, tmp_path / "precise")
    a = torch.load(tmp_path / "plain" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "precise" / "last.pt", weights_only=False)["model"]
    weights = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(a[k], b[k]) for k in weights)
    assert not all(torch.equal(a[k], b[k]) for k in a if k.endswith("running_mean"))
    assert plain["final_train_accuracy"] == precise["final_train_accuracy"]
    assert plain["final_test_loss"] != precise["final_test_loss"]
