# autograd.mk: programs of this fragment (one owner per file)
