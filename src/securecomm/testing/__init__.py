"""What tests need and the product does not: the man-in-the-middle proxy. Only tests and
``securecomm mitm`` import it."""
