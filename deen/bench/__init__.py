"""deen bench: backends timed side by side with accuracy beside speed."""
