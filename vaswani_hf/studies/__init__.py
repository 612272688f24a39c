"""Studies: models trained and measured, each reproduced by one command: the main job (`main_job`, the whole recipe on
the built-in corpus) and the Transformer against recurrent models (`recurrence`, with its parts `gradient_norms` and
`length_task`)."""
