"""Stage 1, data: the MNIST files (IDX parsing, download with checksums), normalization, batch
augmentation and the preprocessing that turns a photo of a digit into MNIST's 28x28 format."""
