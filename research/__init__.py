"""Research on the Qlib dataset: the example LightGBM / Alpha158 / TopkDropout workflow (crypto settings).

Not part of the data product (``feeder``): it only reads the Qlib provider directory.
See research/README.md.
"""
