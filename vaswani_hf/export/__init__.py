"""Publishing a trained model: its model card (`model_card`), the Hugging Face Hub (`hub`), and CTranslate2
(`ctranslate2`)."""
