"""Local servers that speak cloud providers' wire protocols, so our real client code runs."""
