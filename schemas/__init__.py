"""The one definition of every payload: HTTP bodies, workflow and activity inputs and outputs."""
