"""Platform-independent gateware, each block with a pure-Python golden model beside it."""
