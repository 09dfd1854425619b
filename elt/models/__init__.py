"""Networks: the looped transformer (ELT, vanilla looped, unshared and shallow layouts) and its named sizes."""
