"""Training: the LightningModule, the train entry, callbacks, checkpoint -> release."""
