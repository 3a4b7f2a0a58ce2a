module realnode/images

go 1.26.0
