"""CDK stacks and constructs of the BLOOM hosting app."""
