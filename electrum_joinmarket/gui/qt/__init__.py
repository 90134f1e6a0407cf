"""The JoinMarket tab of Electrum's Qt main window and its dialogs."""
