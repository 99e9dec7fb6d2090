"""ImageList.from_tensors pads as detectron2."""
import torch

from maskrcnn_multi.structures import ImageList


def test_pads_to_size_divisibility_and_keeps_sizes():
    images = [torch.rand(3, 20, 30), torch.rand(3, 33, 17)]
    batch = ImageList.from_tensors(images, size_divisibility=32, pad_value=-1.0)
    assert batch.tensor.shape == (2, 3, 64, 32)
    assert batch.image_sizes == [(20, 30), (33, 17)]
    torch.testing.assert_close(batch[0], images[0])
    torch.testing.assert_close(batch[1], images[1])
    assert (batch.tensor[0, :, 20:, :] == -1).all() and (batch.tensor[1, :, :, 17:] == -1).all()


def test_single_image_and_no_divisibility():
    image = torch.rand(1, 5, 7)
    batch = ImageList.from_tensors([image])
    assert batch.tensor.shape == (1, 1, 5, 7) and len(batch) == 1
    torch.testing.assert_close(batch[0], image)


def test_padding_constraints_square_and_divisibility():
    batch = ImageList.from_tensors([torch.rand(3, 10, 12)], padding_constraints={"square_size": 16})
    assert batch.tensor.shape == (1, 3, 16, 16)
    batch = ImageList.from_tensors(
        [torch.rand(3, 10, 12)], size_divisibility=4, padding_constraints={"size_divisibility": 32, "square_size": 0}
    )
    assert batch.tensor.shape == (1, 3, 32, 32)
